"""Reconnect emails, asked for: when a check finds the stored password or token refused (or the mailbox out
of reach too long), when the owner's password is about to expire, or when the dashboard asks.

A request only bumps `reconnectVersion` on the agent item (with its purpose); the invite sender, on the
stream record of that change, issues a single-use link (the invite machinery: hashed, expiring,
scanner-safe) and emails it. Asking is rate-limited here, so every caller gets the same limits: at most one
email per agent per `min_interval`, and at most `max_emails` for one problem (the first and its reminders)
unless the dashboard asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from onboarding.agents.models import Agent, AgentStatus, Attr
from onboarding.agents.store import AgentRepository
from onboarding.core.errors import AgentNotFoundError, ConcurrentModificationError, IllegalTransitionError
from onboarding.core.observability import logger, metrics

S = AgentStatus


class ReconnectPurpose(StrEnum):
    RECONNECT = "reconnect"  # the mailbox stopped connecting: new password, or Sign in with Microsoft again
    PASSWORD_EXPIRY = "password_expiry"  # noqa: S105 (a purpose, not a password): the password expires soon: the link to use after changing it


# Where each purpose makes sense. A password-expiry warning goes to a mailbox that still connects.
ALLOWED = {
    ReconnectPurpose.RECONNECT: frozenset({S.NEEDS_RECONNECT, S.DISCONNECTED}),
    ReconnectPurpose.PASSWORD_EXPIRY: frozenset({S.VERIFIED}),
}


@dataclass(frozen=True)
class ReconnectPolicy:
    min_interval: timedelta = timedelta(days=3)
    max_emails: int = 3


@dataclass(frozen=True)
class ReconnectRequest:
    """What became of a request: `requested` is False when a limit held it back (`next_allowed_at` says until
    when, None when the reminders for this problem are spent)."""

    requested: bool
    agent: Agent
    reconnect_version: int
    next_allowed_at: datetime | None = None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_reconnect(
    repo: AgentRepository,
    tenant_id: str,
    agent_id: str,
    *,
    purpose: ReconnectPurpose,
    policy: ReconnectPolicy,
    now: datetime | None = None,
    by_dashboard: bool = False,
) -> ReconnectRequest:
    """Ask for a reconnect email for the agent, within the limits. Raises AgentNotFoundError, and
    IllegalTransitionError when the agent's status has no use for this email."""
    now = now or datetime.now(UTC)
    record = repo.get_record(tenant_id, agent_id)
    if record is None:
        raise AgentNotFoundError(f"No agent {agent_id} in this account")
    agent, health = record.agent, record.health
    if agent.status not in ALLOWED[purpose]:
        if purpose is ReconnectPurpose.RECONNECT and agent.status is S.VERIFIED:
            raise IllegalTransitionError("The mailbox is connected; it needs no reconnect email")
        raise IllegalTransitionError(f"An agent in status {agent.status.value} gets no {purpose.value} email")
    last = _parse(health.reconnect_requested_at)
    if last is not None and now - last < policy.min_interval:
        return ReconnectRequest(False, agent, health.reconnect_version, last + policy.min_interval)
    if not by_dashboard and health.reconnect_emails >= policy.max_emails:
        return ReconnectRequest(False, agent, health.reconnect_version, None)
    version = health.reconnect_version + 1
    expected: dict[str, object] = {"version": agent.version}
    if health.reconnect_version:
        expected[Attr.RECONNECT_VERSION] = health.reconnect_version
    try:
        repo.update_attributes(
            tenant_id,
            agent_id,
            {
                Attr.RECONNECT_VERSION: version,
                Attr.RECONNECT_PURPOSE: purpose.value,
                Attr.RECONNECT_REQUESTED_AT: _iso(now),
                Attr.RECONNECT_EMAILS: health.reconnect_emails + 1,
            },
            expected_status=agent.status,
            expected=expected,
        )
    except ConcurrentModificationError:
        # Changed meanwhile (another request, a check, the owner reconnecting): that change stands.
        logger.info("Reconnect request skipped: the agent changed", extra={"agent_id": agent_id})
        return ReconnectRequest(False, agent, health.reconnect_version, None)
    logger.info(
        "Reconnect email requested",
        extra={"agent_id": agent_id, "reconnect_version": version, "purpose": purpose.value},
    )
    metrics.add_metric(name="ReconnectRequested", unit="Count", value=1)
    return ReconnectRequest(True, agent, version)
