"""The light Exchange check against the simulator: the settings onboarding recorded, one sign-in, at most
three HTTP requests, a refused password sent once."""

from __future__ import annotations

import pytest

from devstack.exchange_sim import ExchangeSimulator
from onboarding.exchange import Diagnosis, ExchangeConfig, ExchangeContext, ExchangeFailure, discover
from onboarding.exchange.check import check
from onboarding.exchange.models import ExchangeSettings
from onboarding.health.models import Verdict
from onboarding.health.probes import exchange_verdict


def _recorded(email: str, password: str, config: ExchangeConfig) -> ExchangeSettings:
    """What onboarding stored for the mailbox (discovery's settings)."""
    return discover(email, password, ExchangeContext(config=config))


def _context(settings: ExchangeSettings, config: ExchangeConfig) -> ExchangeContext:
    return ExchangeContext(
        config=config,
        username=settings.username,
        ews_url=settings.ews_url,
        auth_type=settings.auth_type,
        server_build=settings.server_build,
    )


def _ews_requests(sim: ExchangeSimulator) -> int:
    return sum(1 for r in sim.requests_seen if r.path.lower().startswith("/ews/"))


@pytest.mark.parametrize(
    ("email", "password"), [("bea@fabrikam.test", "Bea-Pass-4"), ("alice@contoso.test", "Alice-Pass-1")]
)
def test_a_healthy_mailbox_is_checked_in_at_most_three_requests(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig, email: str, password: str
) -> None:
    settings = _recorded(email, password, exchange_config)
    exchange_sim.reset_observations()

    found = check(email, password, _context(settings, exchange_config))

    assert found.inbox_item_count >= 0
    assert found.requests == _ews_requests(exchange_sim) <= 3
    # NTLM authenticates the connection once; Basic carries the password on each of its two requests.
    attempts = [a.ok for a in exchange_sim.auth_attempts]
    assert attempts == ([True] if settings.auth_type == "NTLM" else [True, True])


def test_a_changed_password_is_refused_and_sent_once(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    settings = _recorded("bea@fabrikam.test", "Bea-Pass-4", exchange_config)
    exchange_sim.reset_observations()

    with pytest.raises(ExchangeFailure) as refused:
        check("bea@fabrikam.test", "Old-Pass-1", _context(settings, exchange_config))

    assert refused.value.code is Diagnosis.AUTH_FAILED
    assert exchange_verdict(refused.value.code) is Verdict.REFUSED
    assert [a.ok for a in exchange_sim.auth_attempts] == [False]
    assert "Old-Pass-1" not in refused.value.detail


def test_a_locked_account_is_reported_locked(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    settings = ExchangeSettings(
        ews_url="https://mail.contoso.test/EWS/Exchange.asmx",
        server="mail.contoso.test",
        auth_type="NTLM",
        username="CONTOSO\\lars",
    )

    with pytest.raises(ExchangeFailure) as locked:
        check("lars@contoso.test", "Lars-Pass-3", _context(settings, exchange_config))

    assert locked.value.code is Diagnosis.ACCOUNT_LOCKED
    assert exchange_verdict(locked.value.code) is Verdict.LOCKED
