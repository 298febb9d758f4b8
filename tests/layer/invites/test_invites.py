"""The invite use cases (`onboarding.invites.delivery`), called directly against the real repositories and moto SES."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest

from onboarding.agents.models import AgentStatus
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core.errors import (
    IllegalTransitionError,
    InviteBouncedError,
    InviteExpiredError,
    InviteLockedError,
    InviteNotFoundError,
    InviteRevokedError,
    InviteUsedError,
)
from onboarding.invites import delivery as invites
from onboarding.invites.mailer import Mailer
from onboarding.invites.models import DeliveryOutcome, InviteRequested
from onboarding.invites.store import DynamoInviteRepository
from tests import lifecycle
from tests.invite_helpers import emails

S = AgentStatus


def test_a_requested_invite_is_emailed_once_and_the_agent_becomes_invited(
    repo: DynamoAgentRepository, invite_repo: DynamoInviteRepository, mailer: Mailer
) -> None:
    # Given a new agent (invite version 1 requested)
    agent = lifecycle.add(repo, tenant_name="Contoso")
    request = InviteRequested(tenant_id="demo", agent_id=agent.agent_id, invite_version=1)
    deliver = functools.partial(
        invites.deliver_invite, repo=repo, invites=invite_repo, mailer=mailer, config=lifecycle.INVITE_CONFIG
    )
    # When the request is delivered, and delivered again (a replayed stream record)
    first, again = deliver(request), deliver(request)
    # Then one email went out and the agent is invited until the link expires
    assert (first, again) == (DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED)
    assert len(emails()) == 1
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.agent.status is S.INVITED
    assert record.invite.invite_sent_at
    assert record.invite.invite_expires_at


def test_a_resend_replaces_the_link(
    repo: DynamoAgentRepository, invite_repo: DynamoInviteRepository, mailer: Mailer
) -> None:
    agent = lifecycle.add(repo)
    old = lifecycle.send_invite(repo, invite_repo, mailer, agent)
    # When the dashboard asks for the invite again
    pending = invites.request_invite(repo, "demo", agent.agent_id)
    assert pending.status is S.INVITE_PENDING
    new = lifecycle.send_invite(repo, invite_repo, mailer, pending)
    # Then only the newest link works
    with pytest.raises(InviteRevokedError):
        invites.resolve_invite(repo, invite_repo, old)
    invite, found = invites.resolve_invite(repo, invite_repo, new)
    assert (invite.invite_version, found.agent_id) == (2, agent.agent_id)


def test_a_resend_while_one_is_pending_changes_nothing(repo: DynamoAgentRepository) -> None:
    agent = lifecycle.add(repo)
    assert invites.request_invite(repo, "demo", agent.agent_id) == agent


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (S.INVITE_BOUNCED, InviteBouncedError),
        (S.VERIFIED, IllegalTransitionError),
        (S.CONNECTING, IllegalTransitionError),
        (S.NEEDS_SETTINGS, IllegalTransitionError),
    ],
)
def test_no_resend_where_it_cannot_help(
    repo: DynamoAgentRepository, status: AgentStatus, error: type[Exception]
) -> None:
    agent = lifecycle.add_at(repo, status)
    with pytest.raises(error):
        invites.request_invite(repo, "demo", agent.agent_id)
    assert repo.get("demo", agent.agent_id) == agent


@pytest.mark.parametrize("token", ["", "short", "x" * 43 + "y", "!" * 43])
def test_a_malformed_link_is_not_found_without_a_lookup(
    repo: DynamoAgentRepository, invite_repo: DynamoInviteRepository, token: str
) -> None:
    with pytest.raises(InviteNotFoundError):
        invites.resolve_invite(repo, invite_repo, token)


def test_a_link_expires_after_its_validity(
    repo: DynamoAgentRepository, invite_repo: DynamoInviteRepository, mailer: Mailer
) -> None:
    token = lifecycle.send_invite(repo, invite_repo, mailer, lifecycle.add(repo))
    invites.resolve_invite(repo, invite_repo, token, now=datetime.now(UTC) + timedelta(days=6, hours=23))
    with pytest.raises(InviteExpiredError):
        invites.resolve_invite(repo, invite_repo, token, now=datetime.now(UTC) + timedelta(days=7, minutes=1))


def test_wrong_passwords_lock_the_link(
    repo: DynamoAgentRepository, invite_repo: DynamoInviteRepository, mailer: Mailer
) -> None:
    token = lifecycle.send_invite(repo, invite_repo, mailer, lifecycle.add(repo))
    left = [invites.record_failed_password(repo, invite_repo, token, max_failed_attempts=3) for _ in range(3)]
    assert left == [2, 1, 0]
    with pytest.raises(InviteLockedError):
        invites.resolve_invite(repo, invite_repo, token, max_failed_attempts=3)


def test_a_consumed_link_is_used_up_but_still_shows_the_status(
    repo: DynamoAgentRepository, invite_repo: DynamoInviteRepository, mailer: Mailer
) -> None:
    token = lifecycle.send_invite(repo, invite_repo, mailer, lifecycle.add(repo))
    used, _ = invites.consume_invite(repo, invite_repo, token)
    assert used.used_at is not None
    with pytest.raises(InviteUsedError):
        invites.consume_invite(repo, invite_repo, token)
    invite, _ = invites.resolve_invite(repo, invite_repo, token, allow_used=True)
    assert invite.used_at is not None
