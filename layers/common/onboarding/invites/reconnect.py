"""Reconnect emails, asked for: when a check finds the stored password or token refused (or the mailbox out
of reach too long), when the owner's password is about to expire, or when the dashboard asks.

A request only bumps `reconnectVersion` on the agent item (with its purpose) and marks it pending; the invite
sender, on the stream record of that change, issues a single-use link (the invite machinery: hashed,
expiring, scanner-safe, attempts counted) and emails it, at most once per version (`deliver_reconnect`). Asking is rate-limited here, so every caller gets the same limits: at most one
email per agent per `min_interval`, and at most `max_emails` for one problem (the first and its reminders)
unless the dashboard asks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from onboarding.agents.models import Agent, AgentStatus, Attr
from onboarding.agents.problems import problem_for
from onboarding.agents.store import AgentRepository
from onboarding.core.errors import (
    AgentNotFoundError,
    ConcurrentModificationError,
    EmailNotSentError,
    EmailRejectedError,
    IllegalTransitionError,
    ReconnectTooSoonError,
)
from onboarding.core.observability import logger, metrics
from onboarding.core.times import iso, parse_iso
from onboarding.invites.models import DeliveryOutcome, Invite, LinkPurpose, ReconnectRequested
from onboarding.invites.store import InviteRepository
from onboarding.invites.tokens import invite_link, new_token, token_hash

if TYPE_CHECKING:
    from onboarding.invites.mailer import Mailer

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
    last = parse_iso(health.reconnect_requested_at)
    if last is not None and now - last < policy.min_interval:
        return ReconnectRequest(False, agent, health.reconnect_version, last + policy.min_interval)
    if not by_dashboard and health.reconnect_emails >= policy.max_emails:
        return ReconnectRequest(False, agent, health.reconnect_version, None)
    version = health.reconnect_version + 1
    expected: dict[str, object] = {"version": agent.version}
    if health.reconnect_version:
        expected[Attr.RECONNECT_VERSION] = health.reconnect_version
    try:
        if health.reconnect_pending is not None:
            # The previous email was never handled (its stream record was lost or gave up): the stream's filter
            # wakes the sender when `reconnectPending` appears, so it goes first, then comes back.
            repo.update_attributes(
                tenant_id,
                agent_id,
                {},
                expected_status=agent.status,
                expected=expected,
                remove_attributes=(Attr.RECONNECT_PENDING,),
            )
        repo.update_attributes(
            tenant_id,
            agent_id,
            {
                Attr.RECONNECT_VERSION: version,
                Attr.RECONNECT_PURPOSE: purpose.value,
                Attr.RECONNECT_REQUESTED_AT: iso(now),
                Attr.RECONNECT_EMAILS: health.reconnect_emails + 1,
                Attr.RECONNECT_PENDING: version,  # asks the invite sender (the stream) for the email
            },
            expected_status=agent.status,
            expected=expected,
            remove_attributes=(Attr.RECONNECT_ATTEMPTS,),
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


def reconnect_from_dashboard(
    repo: AgentRepository,
    tenant_id: str,
    agent_id: str,
    *,
    policy: ReconnectPolicy,
    now: datetime | None = None,
) -> ReconnectRequest:
    """The dashboard's "Send reconnect email": the interval holds, the reminders' limit does not. Raises
    AgentNotFoundError, IllegalTransitionError (the agent needs no reconnect), ReconnectTooSoonError (with
    the seconds until one may be asked), ConcurrentModificationError (the agent changed meanwhile)."""
    now = now or datetime.now(UTC)
    asked = request_reconnect(
        repo,
        tenant_id,
        agent_id,
        purpose=ReconnectPurpose.RECONNECT,
        policy=policy,
        now=now,
        by_dashboard=True,
    )
    if asked.requested:
        return asked
    if asked.next_allowed_at is not None:
        wait = max(1, math.ceil((asked.next_allowed_at - now).total_seconds()))
        raise ReconnectTooSoonError(
            f"A reconnect email was sent to this mailbox recently; another can be sent after "
            f"{iso(asked.next_allowed_at)}",
            retry_after=wait,
        )
    raise ConcurrentModificationError("The agent changed while the email was asked for; try again")


# -- delivering ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReconnectLinkPolicy:
    valid_for: timedelta = timedelta(days=7)
    # A password-expiry link works until this long after the password expired (the owner changes it late).
    after_expiry: timedelta = timedelta(days=7)
    max_send_attempts: int = 4


def deliver_reconnect(
    request: ReconnectRequested,
    *,
    repo: AgentRepository,
    invites: InviteRepository,
    mailer: Mailer,
    public_base_url: str,
    policy: ReconnectLinkPolicy = ReconnectLinkPolicy(),
    now: datetime | None = None,
) -> DeliveryOutcome:
    """Issue a reconnect link and email it, at most once per reconnect version, as `deliver_invite` does for
    invites: the claim is the last write before SES, released only when SES surely did not send; a version
    claimed but never confirmed is not sent again (the dashboard can ask for a new one).

    The record only wakes the sender: it acts on the agent's pending version (a record of an older request
    finds a newer one pending and sends that; a replay finds none and skips). Raises EmailNotSentError for a
    failure worth retrying (the record fails and is retried)."""
    from onboarding.invites.delivery import _surely_not_sent
    from onboarding.invites.mailer import ReconnectEmailContent, render_reconnect, tag_value

    record = repo.get_record(request.tenant_id, request.agent_id)
    log: dict[str, object] = {"agent_id": request.agent_id, "reconnect_version": request.reconnect_version}
    if record is None:
        logger.info("Reconnect email skipped: the agent was removed", extra=log)
        return DeliveryOutcome.SKIPPED
    agent, health = record.agent, record.health
    version = health.reconnect_version
    log["reconnect_version"] = version
    if not version or health.reconnect_pending != version:
        logger.info("Reconnect email skipped: none pending", extra=log)
        return DeliveryOutcome.SKIPPED
    try:
        purpose = ReconnectPurpose(health.reconnect_purpose or ReconnectPurpose.RECONNECT.value)
    except ValueError:
        purpose = ReconnectPurpose.RECONNECT
    tenant_id, agent_id = agent.tenant_id, agent.agent_id
    if agent.status not in ALLOWED[purpose]:
        # Reconnected, recovered or moved on since it was asked for: this email would say something untrue.
        invites.finish_reconnect(tenant_id, agent_id, version, sent_at=None)
        logger.info("Reconnect email skipped: no longer needed", extra={**log, "status": agent.status.value})
        return DeliveryOutcome.SKIPPED
    now = now or datetime.now(UTC)
    if health.reconnect_accepted == version:
        invites.finish_reconnect(tenant_id, agent_id, version, sent_at=iso(now))
        logger.info("Reconnect email accepted by SES before; marked sent", extra=log)
        return DeliveryOutcome.SENT
    if health.reconnect_sending == version:
        # Handed to SES by an earlier run that never heard back: it may be in the inbox. Never a second one.
        invites.finish_reconnect(tenant_id, agent_id, version, sent_at=None)
        logger.error("Reconnect email may not have been sent: SES did not confirm it", extra=log)
        metrics.add_metric(name="ReconnectEmailUndecided", unit="Count", value=1)
        return DeliveryOutcome.FAILED

    expires_at = now + policy.valid_for
    password_expires_at = parse_iso(health.password_expires_at)
    if purpose is ReconnectPurpose.PASSWORD_EXPIRY and password_expires_at is not None:
        expires_at = max(expires_at, password_expires_at + policy.after_expiry)
    token = new_token()
    invite = Invite(
        token_hash=token_hash(token),
        tenant_id=tenant_id,
        agent_id=agent_id,
        invite_version=record.invite.invite_version,
        purpose=LinkPurpose(purpose.value),
        reconnect_version=version,
        created_at=now,
        expires_at=expires_at,
    )
    invites.put(invite)
    email = render_reconnect(
        ReconnectEmailContent(
            to=agent.email,
            agent_name=agent.name,
            tenant_name=record.invite.tenant_name,
            link=invite_link(public_base_url, token),
            expires_at=expires_at,
            purpose=purpose.value,
            problem=problem_for(health.check_problem, email=agent.email),
            since=parse_iso(health.problem_since or health.failing_since or health.reconnect_requested_at),
            password_expires_at=password_expires_at,
            microsoft=record.connection.verify_method == "graph",
            reminder=health.reconnect_emails > 1,
        )
    )
    tags = {
        "agent_id": agent_id,
        "reconnect_version": str(version),
        "tenant": tag_value(tenant_id),
        "purpose": purpose.value,
    }
    if not invites.claim_reconnect(tenant_id, agent_id, version, ALLOWED[purpose]):
        logger.info(
            "Reconnect email skipped: another run is sending it, or it is no longer wanted", extra=log
        )
        return DeliveryOutcome.SKIPPED
    try:
        message_id = mailer.send(email, tags=tags)
    except EmailRejectedError as error:
        invites.release_reconnect(tenant_id, agent_id, version)
        invites.finish_reconnect(tenant_id, agent_id, version, sent_at=None)
        logger.error("Reconnect email refused by SES", extra={**log, "error": error.message})
        metrics.add_metric(name="ReconnectEmailFailed", unit="Count", value=1)
        return DeliveryOutcome.FAILED
    except EmailNotSentError as error:
        if _surely_not_sent(error):
            invites.release_reconnect(tenant_id, agent_id, version)
        attempts = invites.count_reconnect_failure(tenant_id, agent_id, version)
        if attempts is not None and attempts >= policy.max_send_attempts:
            invites.finish_reconnect(tenant_id, agent_id, version, sent_at=None)
            logger.error("Reconnect email not sent; gave up", extra={**log, "attempts": attempts})
            metrics.add_metric(name="ReconnectEmailFailed", unit="Count", value=1)
            return DeliveryOutcome.FAILED
        logger.warning("Reconnect email not sent; will retry", extra={**log, "attempts": attempts})
        raise
    invites.record_reconnect_accepted(tenant_id, agent_id, version, message_id)
    invites.finish_reconnect(tenant_id, agent_id, version, sent_at=iso(now))
    logger.info("Reconnect email sent", extra={**log, "purpose": purpose.value, "ses_message_id": message_id})
    metrics.add_metric(name="ReconnectEmailSent", unit="Count", value=1)
    return DeliveryOutcome.SENT
