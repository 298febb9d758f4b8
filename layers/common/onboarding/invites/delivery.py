"""Invite use cases: request (add / resend), deliver (stream -> email), bounces, and the link itself.

The connect page calls `resolve_invite` on every view (read-only: mail scanners GET links before people
click); the verification workflow counts wrong passwords and uses the invite up once the mailbox
connected. The token never appears in a log line: the agent id and invite version do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NoReturn

from onboarding.agents.models import Agent, AgentStatus, Attr, InviteState, utcnow
from onboarding.agents.store import AgentRepository
from onboarding.core.errors import (
    AgentNotFoundError,
    ConcurrentModificationError,
    EmailNotSentError,
    EmailRejectedError,
    IllegalTransitionError,
    InviteBouncedError,
    InviteDeliveryFailedError,
    InviteExpiredError,
    InviteLockedError,
    InviteNotFoundError,
    InviteRevokedError,
    InviteUsedError,
)
from onboarding.core.observability import logger, metrics
from onboarding.core.times import iso
from onboarding.exchange.diagnoses import EXAMPLE_DOMAIN
from onboarding.invites.models import DeliveryOutcome, Invite, InviteRequested, LinkPurpose, SesNotification
from onboarding.invites.store import InviteRepository
from onboarding.invites.tokens import invite_link, looks_like_token, new_token, token_hash

if TYPE_CHECKING:
    from onboarding.agents.start_watch import StartWatch
    from onboarding.invites.mailer import Mailer

S = AgentStatus
# Statuses in which the person may still use the link to connect (and retry after a failure).
CONNECTABLE = frozenset({S.INVITED, S.CONNECTING, S.NEEDS_SETTINGS, S.FAILED})
# ... and with a reconnect link: a mailbox that connected once (and the attempts the link starts).
RECONNECTABLE = frozenset(
    {S.VERIFIED, S.NEEDS_RECONNECT, S.DISCONNECTED, S.CONNECTING, S.NEEDS_SETTINGS, S.FAILED}
)
# Attributes of the previous invite that a new request clears.
_PER_INVITE_ATTRIBUTES = (Attr.INVITE_ATTEMPTS, Attr.INVITE_SENT_AT, Attr.INVITE_EXPIRES_AT)
MAX_FAILED_ATTEMPTS = 10


def windows_login_in_doubt(login_hint: str | None) -> str | None:
    """The Windows sign-in (``DOMAIN\\user``) a refused password may really have wanted, or None.

    Only when the server's answer supports it: the login was an email address (the verdict carries a hint
    only then, `exchange.probing.with_login_hint`) and the server's NTLM challenge named its Windows
    domain. A hint with the placeholder domain (the server named none) suggests nothing.

    From the outside, "wrong password" and "right password, but this server takes only DOMAIN\\user" are
    the same answer (a 401 to the email-address login), so such a refusal is in doubt:

    * the page says that either could be the cause and offers the named login;
    * the lock (MAX_FAILED_ATTEMPTS wrong passwords) lets the link's first such refusal go uncounted (the
      owner has not been told about the Windows sign-in yet), and counts every later one like any wrong
      password. A real wrong password thus still counts from the second try on: at most one try more than
      the limit, once per link, never one per attempt (`InviteRepository.excuse_once`)."""
    if not login_hint:
        return None
    domain, sep, user = login_hint.partition("\\")
    if not (sep and domain and user) or domain == EXAMPLE_DOMAIN:
        return None
    return login_hint


@dataclass(frozen=True)
class InviteConfig:
    public_base_url: str
    valid_for: timedelta = timedelta(days=7)
    max_send_attempts: int = 4


def _load(repo: AgentRepository, tenant_id: str, agent_id: str) -> tuple[Agent, InviteState] | None:
    record = repo.get_record(tenant_id, agent_id)
    return None if record is None else (record.agent, record.invite)


# -- requesting --------------------------------------------------------------------------------


def request_invite(
    repo: AgentRepository, tenant_id: str, agent_id: str, watch: StartWatch | None = None
) -> Agent:
    """Resend: a new invite version (so a new link; every earlier link stops working). With a `watch`, an
    attempt whose start died is settled first (onboarding.agents.start_watch), so it does not block the resend."""
    if watch is not None:
        watch.check(tenant_id, agent_id)
    loaded = _load(repo, tenant_id, agent_id)
    if loaded is None:
        raise AgentNotFoundError(f"No agent {agent_id} in this account")
    agent, state = loaded
    if agent.status is S.INVITE_PENDING:
        return agent  # an invite is already on its way
    if agent.status is S.INVITE_BOUNCED:
        raise InviteBouncedError(
            f"The invite to {agent.email} bounced or was reported as spam, so it is not sent again. "
            "Remove this agent and add the mailbox with a working address."
        )
    if agent.status is S.VERIFIED:
        raise IllegalTransitionError("The mailbox is already connected; it needs no invite")
    if agent.status is S.CONNECTING:
        raise IllegalTransitionError("The mailbox is being connected right now; try again in a minute")
    if agent.status is S.NEEDS_SETTINGS:
        raise IllegalTransitionError(
            "The mailbox owner is asked for the server settings; the current link stays valid"
        )
    updated = repo.transition(
        tenant_id,
        agent_id,
        S.INVITE_PENDING,
        expected_version=agent.version,
        set_attributes={Attr.INVITE_VERSION: state.invite_version + 1, Attr.INVITE_REQUESTED_AT: utcnow()},
        remove_attributes=_PER_INVITE_ATTRIBUTES,
    )
    logger.info(
        "Invite resend requested", extra={"agent_id": agent_id, "invite_version": state.invite_version + 1}
    )
    metrics.add_metric(name="InviteResendRequested", unit="Count", value=1)
    return updated


# -- delivering --------------------------------------------------------------------------------
def deliver_invite(
    request: InviteRequested,
    *,
    repo: AgentRepository,
    invites: InviteRepository,
    mailer: Mailer,
    config: InviteConfig,
    now: datetime | None = None,
) -> DeliveryOutcome:
    """Issue a token and email the link for one invite request, at most once per invite version.

    A replayed or superseded record is SKIPPED (the agent is no longer `invite_pending` at that
    version). Raises InviteDeliveryFailedError once the agent is `invite_failed` (a refusal, or too many
    failed attempts), EmailNotSentError for a failure worth retrying: both make the record fail.
    """
    # The mail code (email.message, the templates) is imported by the functions that send or hear back
    # about mail, not by the dashboard API and the connect page, which use this module too.
    from onboarding.invites.mailer import InviteEmailContent, render_invite, tag_value

    log = {"agent_id": request.agent_id, "invite_version": request.invite_version}
    loaded = _load(repo, request.tenant_id, request.agent_id)
    if loaded is None:
        logger.info("Invite skipped: the agent was removed", extra=log)
        return DeliveryOutcome.SKIPPED
    agent, state = loaded
    if state.invite_version != request.invite_version:
        logger.info("Invite skipped: a newer invite was requested", extra=log)
        return DeliveryOutcome.SKIPPED
    if agent.status is S.INVITE_FAILED:
        # This very version failed for good: keep failing, so the record reaches the DLQ.
        raise InviteDeliveryFailedError(f"The invite could not be sent: {agent.status_reason}")
    if agent.status is not S.INVITE_PENDING:
        logger.info("Invite skipped: already handled", extra={**log, "status": agent.status.value})
        return DeliveryOutcome.SKIPPED

    now = now or datetime.now(UTC)
    version = request.invite_version
    if state.invite_accepted == version:
        # SES accepted this very invite and the run died before writing `invited`: write it now.
        logger.info("Invite accepted by SES before; marking it sent", extra=log)
        _mark_invited(repo, agent, now, now + config.valid_for, log)
        return DeliveryOutcome.SENT
    if state.invite_sending == version:
        # An earlier run handed this invite to SES and never heard that SES accepted it: its link may be in
        # the owner's inbox, or not. A second link must never follow, and "sent" is said only of an email
        # SES accepted: the agent fails, saying so; the dashboard's resend issues a new version.
        _undecided(repo, agent, log)
    token = new_token()
    invite = Invite(
        token_hash=token_hash(token),
        tenant_id=agent.tenant_id,
        agent_id=agent.agent_id,
        invite_version=version,
        created_at=now,
        expires_at=now + config.valid_for,
    )
    invites.put(invite)
    email = render_invite(
        InviteEmailContent(
            to=agent.email,
            agent_name=agent.name,
            tenant_name=state.tenant_name,
            link=invite_link(config.public_base_url, token),
            expires_at=invite.expires_at,
            valid_days=config.valid_for.days,
        )
    )
    tags = {
        "agent_id": agent.agent_id,
        "invite_version": str(version),
        "tenant": tag_value(agent.tenant_id),
    }
    # The claim is the last write before SES, with nothing between it and the call: a run that fails (or
    # is killed) before it sent nothing and left no claim, so its retry sends. At most one email per
    # version: only a run whose conditional claim succeeded calls SES, a claim succeeds once per version,
    # and it is released only when SES surely did not send (it answered an error, or was never reached).
    if not invites.claim_send(agent.tenant_id, agent.agent_id, version):
        logger.info("Invite skipped: another run of it is sending", extra=log)
        return DeliveryOutcome.SKIPPED
    try:
        message_id = mailer.send(email, tags=tags)
    except EmailRejectedError as error:
        invites.release_send(agent.tenant_id, agent.agent_id, version)
        _mark_failed(repo, agent, error.message, log)
        raise InviteDeliveryFailedError(error.message) from error
    except EmailNotSentError as error:
        if _surely_not_sent(error):  # SES answered no, or was never reached: a retry may send
            invites.release_send(agent.tenant_id, agent.agent_id, version)
        attempts = invites.count_send_failure(agent.tenant_id, agent.agent_id, version)
        logger.warning(
            "Invite not sent; will retry", extra={**log, "attempts": attempts, "error": error.message}
        )
        if attempts is not None and attempts >= config.max_send_attempts:
            reason = f"{error.message}; gave up after {attempts} attempts"
            _mark_failed(repo, agent, reason, log)
            raise InviteDeliveryFailedError(reason) from error
        raise
    # Accepted: recorded first, so a run that dies before `invited` is marked sent by its retry.
    invites.record_accepted(agent.tenant_id, agent.agent_id, version, message_id)
    _mark_invited(repo, agent, now, invite.expires_at, log)
    logger.info("Invite sent", extra={**log, "ses_message_id": message_id})
    metrics.add_metric(name="InviteSent", unit="Count", value=1)
    return DeliveryOutcome.SENT


def _mark_invited(
    repo: AgentRepository, agent: Agent, now: datetime, expires_at: datetime, log: dict[str, object]
) -> None:
    try:
        repo.transition(
            agent.tenant_id,
            agent.agent_id,
            S.INVITED,
            expected_version=agent.version,
            set_attributes={Attr.INVITE_SENT_AT: iso(now), Attr.INVITE_EXPIRES_AT: iso(expires_at)},
            remove_attributes=(Attr.INVITE_ATTEMPTS,),
        )
    except (AgentNotFoundError, ConcurrentModificationError, IllegalTransitionError):
        # Removed, bounced or re-requested while the email was on its way: that change stands.
        logger.info("Agent changed while its invite was sent", extra=log)


UNDECIDED_SEND = (
    "The invite email may not have been sent: SES did not confirm it. Resend the invite to send a new link."
)


def _undecided(repo: AgentRepository, agent: Agent, log: dict[str, object]) -> NoReturn:
    _mark_failed(repo, agent, UNDECIDED_SEND, log)
    raise InviteDeliveryFailedError(UNDECIDED_SEND)


def _surely_not_sent(error: EmailNotSentError) -> bool:
    """SES answered with an error, or the connection never opened. A read timeout is not sure: SES may
    have accepted the email and the answer got lost."""
    from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

    return isinstance(error.__cause__, ClientError | ConnectTimeoutError | EndpointConnectionError)


def _mark_failed(repo: AgentRepository, agent: Agent, reason: str, log: dict[str, object]) -> None:
    try:
        repo.transition(
            agent.tenant_id, agent.agent_id, S.INVITE_FAILED, reason=reason, expected_version=agent.version
        )
    except (AgentNotFoundError, ConcurrentModificationError, IllegalTransitionError):
        logger.info("Agent changed before its failed invite was recorded", extra=log)
        return
    logger.error("Invite failed", extra={**log, "reason": reason})
    metrics.add_metric(name="InviteFailed", unit="Count", value=1)


# -- bounces and complaints --------------------------------------------------------------------
def record_delivery_problem(repo: AgentRepository, notification: SesNotification) -> Agent | None:
    """A permanent bounce or a complaint about an invite: the agent becomes `invite_bounced` (no more
    resends to that address). Returns the updated agent, or None when there is nothing to change."""
    from onboarding.invites.mailer import untag_value  # see deliver_invite

    agent_id, tenant_tag = notification.tag("agent_id"), notification.tag("tenant")
    log = {
        "agent_id": agent_id,
        "event_type": notification.event_type,
        "ses_message_id": notification.mail.message_id,
    }
    if not agent_id or not tenant_tag:
        logger.info("SES event is not about an invite", extra=log)
        return None
    if not notification.stops_sending:
        logger.info("Transient bounce ignored", extra=log)
        return None
    try:
        tenant_id = untag_value(tenant_tag)
        agent = repo.get(tenant_id, agent_id)
    except (AgentNotFoundError, ValueError):
        logger.info("SES event for an agent that no longer exists", extra=log)
        return None
    recipients = {address.lower() for address in notification.affected_recipients()}
    if agent.email.lower() not in recipients:
        logger.info("SES event for an address the agent no longer has", extra=log)
        return None
    if agent.status not in (S.INVITE_PENDING, S.INVITED):
        logger.info("SES event after the invite stage ignored", extra={**log, "status": agent.status.value})
        return None
    detail = notification.event_type
    if notification.bounce is not None:
        detail += f" ({notification.bounce.bounce_type}/{notification.bounce.bounce_sub_type or '-'})"
    try:
        updated = repo.transition(
            tenant_id, agent_id, S.INVITE_BOUNCED, reason=f"The invite email was refused: {detail}"
        )
    except IllegalTransitionError:
        logger.info("Agent moved on before the SES event arrived", extra=log)
        return None
    logger.warning("Invite bounced", extra=log)
    metrics.add_metric(name="InviteBounced", unit="Count", value=1)
    return updated


# -- the link (for the connect page) -----------------------------------------------------------
def resolve_invite(
    repo: AgentRepository,
    invites: InviteRepository,
    token: str,
    *,
    now: datetime | None = None,
    allow_used: bool = False,
    max_failed_attempts: int = MAX_FAILED_ATTEMPTS,
) -> tuple[Invite, Agent]:
    """The invite and agent behind a link, or a typed InviteError. Read-only: safe for any GET.

    `allow_used=True` still resolves an invite that was used (or whose mailbox is verified): for a
    status page shown after the connection, never for anything that acts on the invite."""
    if not looks_like_token(token):
        raise InviteNotFoundError("No such invite")
    invite = invites.get(token_hash(token))
    if invite is None:
        raise InviteNotFoundError("No such invite")
    record = repo.get_record(invite.tenant_id, invite.agent_id)
    if record is None:
        raise InviteRevokedError("This invite was withdrawn")
    agent, state = record.agent, record.invite
    reconnecting = invite.purpose is not LinkPurpose.INVITE
    if invite.invite_version != state.invite_version or (
        reconnecting and invite.reconnect_version != record.health.reconnect_version
    ):
        raise InviteRevokedError("This invite was replaced by a newer one")
    # An invite is done once its mailbox is verified; a reconnect link is for a mailbox that was verified, so
    # only its own use ends it.
    used = invite.used_at is not None or (agent.status is S.VERIFIED and not reconnecting)
    if used and not allow_used:
        raise InviteUsedError("This invite was already used")
    # An expired link shows nothing, not even the status page of a used one.
    if (now or datetime.now(UTC)) >= invite.expires_at:
        raise InviteExpiredError("This invite has expired; ask for a new one")
    if used:
        return invite, agent
    if agent.status not in (RECONNECTABLE if reconnecting else CONNECTABLE):
        raise InviteRevokedError("This invite is no longer valid")
    if invite.failed_attempts >= max_failed_attempts:
        raise InviteLockedError("Too many failed attempts with this invite; ask for a new one")
    return invite, agent


def record_failed_password(
    repo: AgentRepository,
    invites: InviteRepository,
    token: str,
    *,
    now: datetime | None = None,
    max_failed_attempts: int = MAX_FAILED_ATTEMPTS,
) -> int:
    """Count a wrong password against the invite; returns the attempts left (0: now locked, and
    `resolve_invite` answers InviteLockedError until the dashboard resends)."""
    invite, agent = resolve_invite(repo, invites, token, now=now, max_failed_attempts=max_failed_attempts)
    attempts = invites.add_failed_attempt(invite, max_failed_attempts=max_failed_attempts)
    left = max(0, max_failed_attempts - attempts)
    log = {"agent_id": agent.agent_id, "invite_version": invite.invite_version, "attempts_left": left}
    logger.warning("Wrong password for an invite", extra=log)
    if left == 0:
        metrics.add_metric(name="InviteLocked", unit="Count", value=1)
    return left


def consume_invite(
    repo: AgentRepository,
    invites: InviteRepository,
    token: str,
    *,
    now: datetime | None = None,
    max_failed_attempts: int = MAX_FAILED_ATTEMPTS,
) -> tuple[Invite, Agent]:
    """Use the invite up, once the mailbox connected. Atomic: of racing callers exactly one returns,
    the others get InviteUsedError. The agent's own status change stays with the caller."""
    at = now or datetime.now(UTC)
    invite, agent = resolve_invite(repo, invites, token, now=at, max_failed_attempts=max_failed_attempts)
    used = invites.consume(invite, at=at, max_failed_attempts=max_failed_attempts)
    logger.info("Invite used", extra={"agent_id": agent.agent_id, "invite_version": invite.invite_version})
    metrics.add_metric(name="InviteUsed", unit="Count", value=1)
    return used, agent
