"""Asking for reconnect emails: who may get one, and the limits every caller gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from onboarding.agents.models import AgentStatus
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core.errors import IllegalTransitionError
from onboarding.invites.reconnect import ReconnectPolicy, ReconnectPurpose, request_reconnect
from tests import lifecycle

S = AgentStatus
P = ReconnectPurpose
POLICY = ReconnectPolicy(min_interval=timedelta(days=3), max_emails=2)
T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def _ask(repo: DynamoAgentRepository, agent_id: str, at: datetime, **kwargs: object):  # type: ignore[no-untyped-def]
    return request_reconnect(repo, "demo", agent_id, purpose=P.RECONNECT, policy=POLICY, now=at, **kwargs)  # type: ignore[arg-type]


def test_an_agent_that_needs_reconnecting_gets_one_email_per_interval(repo: DynamoAgentRepository) -> None:
    agent = lifecycle.add_at(repo, S.NEEDS_RECONNECT)

    first = _ask(repo, agent.agent_id, T0)
    too_soon = _ask(repo, agent.agent_id, T0 + timedelta(days=2))
    later = _ask(repo, agent.agent_id, T0 + timedelta(days=3))

    assert (first.requested, first.reconnect_version) == (True, 1)
    assert (too_soon.requested, too_soon.next_allowed_at) == (False, T0 + timedelta(days=3))
    assert (later.requested, later.reconnect_version) == (True, 2)
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert (record.health.reconnect_version, record.health.reconnect_purpose) == (2, "reconnect")
    assert record.health.reconnect_emails == 2


def test_reminders_stop_at_the_limit_but_the_dashboard_may_still_send_one(
    repo: DynamoAgentRepository,
) -> None:
    agent = lifecycle.add_at(repo, S.DISCONNECTED)
    for day in (0, 3):
        assert _ask(repo, agent.agent_id, T0 + timedelta(days=day)).requested

    spent = _ask(repo, agent.agent_id, T0 + timedelta(days=6))
    asked = _ask(repo, agent.agent_id, T0 + timedelta(days=6), by_dashboard=True)

    assert (spent.requested, spent.next_allowed_at) == (False, None)
    assert (asked.requested, asked.reconnect_version) == (True, 3)


@pytest.mark.parametrize("status", [S.INVITED, S.CONNECTING, S.FAILED, S.VERIFIED])
def test_no_reconnect_email_for_an_agent_that_does_not_need_one(
    repo: DynamoAgentRepository, status: AgentStatus
) -> None:
    agent = lifecycle.add_at(repo, status)
    with pytest.raises(IllegalTransitionError):
        _ask(repo, agent.agent_id, T0)
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.health.reconnect_version == 0


def test_a_password_expiry_warning_goes_only_to_a_connected_mailbox(repo: DynamoAgentRepository) -> None:
    connected = lifecycle.add_at(repo, S.VERIFIED)
    broken = lifecycle.add_at(repo, S.NEEDS_RECONNECT, email="bea@contoso.com")

    warned = request_reconnect(
        repo, "demo", connected.agent_id, purpose=P.PASSWORD_EXPIRY, policy=POLICY, now=T0
    )
    with pytest.raises(IllegalTransitionError):
        request_reconnect(repo, "demo", broken.agent_id, purpose=P.PASSWORD_EXPIRY, policy=POLICY, now=T0)

    assert warned.requested
    record = repo.get_record("demo", connected.agent_id)
    assert record is not None
    assert record.health.reconnect_purpose == "password_expiry"
