"""A simulated on-premises Microsoft Exchange (autodiscover + EWS, NTLM/Basic) on 127.0.0.1, for tests."""

from .scenarios import HOSTS, MAILBOXES, SCENARIOS, SCENARIOS_BY_NAME, Scenario
from .simulator import ExchangeSimulator

__all__ = ["HOSTS", "MAILBOXES", "SCENARIOS", "SCENARIOS_BY_NAME", "ExchangeSimulator", "Scenario"]
