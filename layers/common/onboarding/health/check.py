"""The check of one agent, and what its verdict changes (the checker function runs this per queue message).

Every write is conditional, so a check racing the owner's reconnect or the agent's removal leaves the newer
state: attribute writes hold the status and the connection attempt the check started from (a reconnect moves
the agent to `connecting` and bumps the attempt), status changes hold the agent's version, and a removed
agent fails every condition. Nothing here creates a secret: a Microsoft 365 token rotated during the check
replaces the stored one only while it is still stored (`CredentialStore.replace`).

Verdicts:

* healthy: `verified` (a `disconnected` agent recovers), the next check one interval on; the password's
  expiry date (Exchange) is kept and the owner warned once per date, `expiry_warning` before it;
* refused (a 401 to the stored login, a revoked or expired token, a disabled account, consent withdrawn,
  Conditional Access): `needs_reconnect` with the reason, and a reconnect email. The secret is never tried
  again: from then on the agent's schedule only sends the bounded reminders (`request_reconnect`);
* locked: status kept, not tried before `lockout_window` has passed, then once;
* transient: status kept (`checkState` retrying: the tick stays), retried with back-off; after
  `disconnect_after` of failures, `disconnected` with the reason and a reconnect email. A server down for
  minutes sends nobody anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from onboarding.agents.models import AgentRecord, AgentStatus, Attr
from onboarding.agents.schedule import iso, next_due, parse_iso
from onboarding.agents.store import AgentRepository
from onboarding.core.errors import (
    AgentNotFoundError,
    ConcurrentModificationError,
    CredentialNotFoundError,
    IllegalTransitionError,
)
from onboarding.core.observability import logger, metrics
from onboarding.health.models import CheckMessage, CheckState, HealthPolicy, ProbeResult, Verdict
from onboarding.invites.reconnect import ReconnectPurpose, request_reconnect

S = AgentStatus
CHECKED = frozenset({S.VERIFIED, S.DISCONNECTED})  # whose mailbox a check signs in to
GRAPH = "graph"  # ConnectionState.verify_method of a Microsoft 365 mailbox


class MailboxProbe(Protocol):
    def probe(self, record: AgentRecord) -> ProbeResult:
        """Sign in once with what onboarding stored and say what happened. Raises CredentialNotFoundError
        when no secret is stored (removed meanwhile)."""


class Outcome(StrEnum):
    CHECKED = "checked"
    REMINDED = "reminded"  # needs_reconnect: a reminder asked for (or none due); nothing signed in
    SKIPPED = "skipped"  # not checkable now (status, lease, lockout window); nothing signed in
    STALE = "stale"  # the agent changed during the check: the newer state stands


@dataclass(frozen=True)
class CheckReport:
    outcome: Outcome
    verdict: Verdict | None = None
    status: AgentStatus | None = None


class HealthChecker:
    def __init__(
        self,
        repo: AgentRepository,
        *,
        exchange: Callable[[], MailboxProbe],
        microsoft: Callable[[], MailboxProbe] | None,
        policy: HealthPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo = repo
        self.exchange = exchange
        self.microsoft = microsoft
        self.policy = policy
        self.clock = clock

    def check(self, message: CheckMessage) -> CheckReport:
        record = self.repo.get_record(message.tenant_id, message.agent_id)
        if record is None:
            logger.info("Check of a removed agent: nothing to do", extra={"agent_id": message.agent_id})
            return CheckReport(Outcome.SKIPPED)
        health, status = record.health, record.agent.status
        if message.lease is not None and health.check_lease != message.lease:
            # A newer dispatch (or a redelivered message whose lease was replaced): that one checks.
            logger.info("Check with an old lease: skipped", extra={"agent_id": message.agent_id})
            return CheckReport(Outcome.SKIPPED, status=status)
        now = self.clock()
        if status is S.NEEDS_RECONNECT:
            return self._remind(record, now)
        if status not in CHECKED:
            self._unschedule(record)
            return CheckReport(Outcome.SKIPPED, status=status)
        locked_until = parse_iso(health.locked_until)
        if locked_until is not None and now < locked_until:
            # Also for a manual check: an account locked by wrong passwords is not tried inside the window.
            logger.info("Account locked: not tried inside the window", extra={"agent_id": message.agent_id})
            return CheckReport(Outcome.SKIPPED, status=status)
        try:
            result = self._probe(record)
        except CredentialNotFoundError:
            logger.info("No secret stored (removed meanwhile?): nothing to check")
            return CheckReport(Outcome.STALE, status=status)
        metrics.add_metric(name="MailboxChecked", unit="Count", value=1)
        try:
            status = self._record(record, result, now)
        except (ConcurrentModificationError, IllegalTransitionError, AgentNotFoundError):
            logger.info(
                "Agent changed during the check: the newer state stands", extra={"agent_id": message.agent_id}
            )
            return CheckReport(Outcome.STALE, verdict=result.verdict)
        return CheckReport(Outcome.CHECKED, verdict=result.verdict, status=status)

    # -- probing -----------------------------------------------------------------------------
    def _probe(self, record: AgentRecord) -> ProbeResult:
        if record.connection.verify_method == GRAPH:
            if self.microsoft is None:
                return ProbeResult(Verdict.TRANSIENT, problem="m365_not_configured")
            return self.microsoft().probe(record)
        return self.exchange().probe(record)

    # -- recording ---------------------------------------------------------------------------
    def _record(self, record: AgentRecord, result: ProbeResult, now: datetime) -> AgentStatus:
        agent = record.agent
        logger.info(
            "Mailbox checked",
            extra={"agent_id": agent.agent_id, "verdict": result.verdict.value, "problem": result.problem},
        )
        if result.verdict is Verdict.HEALTHY:
            return self._healthy(record, result, now)
        if result.verdict is Verdict.REFUSED:
            return self._refused(record, result, now)
        if result.verdict is Verdict.LOCKED:
            return self._locked(record, result, now)
        return self._transient(record, result, now)

    def _expected(self, record: AgentRecord) -> dict[str, Any]:
        """What the agent must still hold for a check's write: the connection attempt it checked."""
        attempt = record.connection.connect_attempt
        return {Attr.ATTEMPT: attempt} if attempt else {}

    def _healthy(self, record: AgentRecord, result: ProbeResult, now: datetime) -> AgentStatus:
        agent, health = record.agent, record.health
        values: dict[str, Any] = {
            Attr.LAST_CHECK_AT: iso(now),
            Attr.LAST_SUCCESS_AT: iso(now),
            Attr.CHECK_STATE: CheckState.OK.value,
            Attr.CHECK_FAILURES: 0,
            Attr.CHECK_DUE_AT: iso(next_due(parse_iso(health.check_due_at), now, self.policy.interval)),
        }
        remove = [Attr.FAILING_SINCE, Attr.CHECK_PROBLEM, Attr.LOCKED_UNTIL, Attr.CHECK_LEASE]
        if result.inbox_item_count is not None:
            values[Attr.INBOX_COUNT] = result.inbox_item_count
        if result.password_expires_at is not None:
            values[Attr.PASSWORD_EXPIRES_AT] = iso(result.password_expires_at)
        elif record.connection.verify_method != GRAPH:
            remove.append(Attr.PASSWORD_EXPIRES_AT)  # never expires, or the server does not say
        if agent.status is S.DISCONNECTED:
            # Recovered: back to verified; the problem and its emails are over.
            values[Attr.RECONNECT_EMAILS] = 0
            self.repo.transition(
                agent.tenant_id,
                agent.agent_id,
                S.VERIFIED,
                expected_version=agent.version,
                set_attributes=values,
                remove_attributes=(*remove, Attr.PROBLEM_SINCE),
            )
            metrics.add_metric(name="MailboxRecovered", unit="Count", value=1)
            logger.info("Mailbox recovered", extra={"agent_id": agent.agent_id})
            status = S.VERIFIED
        else:
            if health.check_state not in (None, CheckState.OK.value):
                metrics.add_metric(name="MailboxRecovered", unit="Count", value=1)
            self.repo.update_attributes(
                agent.tenant_id,
                agent.agent_id,
                values,
                expected_status=S.VERIFIED,
                remove_attributes=tuple(remove),
                expected=self._expected(record),
            )
            status = S.VERIFIED
        if result.password_expires_at is not None:
            self._warn_expiry(record, result.password_expires_at, now)
        return status

    def _warn_expiry(self, record: AgentRecord, expires_at: datetime, now: datetime) -> None:
        """Once per expiry date, `expiry_warning` before it: the owner gets the link to use after changing it."""
        agent = record.agent
        date = iso(expires_at)
        if record.health.expiry_warned_for == date or expires_at - now > self.policy.expiry_warning:
            return
        if expires_at <= now:
            return  # already expired: the next check is refused (or locked), and that asks for a reconnect
        request = request_reconnect(
            self.repo,
            agent.tenant_id,
            agent.agent_id,
            purpose=ReconnectPurpose.PASSWORD_EXPIRY,
            policy=self.policy.reconnect,
            now=now,
        )
        if request.requested:
            self.repo.update_attributes(
                agent.tenant_id,
                agent.agent_id,
                {Attr.EXPIRY_WARNED_FOR: date},
                expected_status=S.VERIFIED,
                expected=self._expected(record),
            )
            metrics.add_metric(name="PasswordExpiryWarned", unit="Count", value=1)

    def _refused(self, record: AgentRecord, result: ProbeResult, now: datetime) -> AgentStatus:
        agent, health = record.agent, record.health
        problem = result.problem or "auth_failed"
        # Out of the schedule's checks for good: the agent stays in the index only for the reminders' dates.
        self.repo.transition(
            agent.tenant_id,
            agent.agent_id,
            S.NEEDS_RECONNECT,
            reason=problem,
            expected_version=agent.version,
            set_attributes={
                Attr.LAST_CHECK_AT: iso(now),
                Attr.CHECK_STATE: CheckState.REFUSED.value,
                Attr.CHECK_PROBLEM: problem,
                Attr.CHECK_FAILURES: health.check_failures + 1,
                Attr.FAILING_SINCE: health.failing_since or iso(now),
                Attr.PROBLEM_SINCE: health.problem_since or health.failing_since or iso(now),
                Attr.RECONNECT_EMAILS: 0 if agent.status is S.VERIFIED else health.reconnect_emails,
                Attr.CHECK_DUE_AT: iso(now + self.policy.reconnect.min_interval),
            },
            remove_attributes=(Attr.CHECK_LEASE, Attr.LOCKED_UNTIL),
        )
        metrics.add_metric(name="MailboxRefused", unit="Count", value=1)
        self._ask_reconnect(agent.tenant_id, agent.agent_id, now)
        return S.NEEDS_RECONNECT

    def _locked(self, record: AgentRecord, result: ProbeResult, now: datetime) -> AgentStatus:
        agent, health = record.agent, record.health
        until = now + self.policy.lockout_window
        self.repo.update_attributes(
            agent.tenant_id,
            agent.agent_id,
            {
                Attr.LAST_CHECK_AT: iso(now),
                Attr.CHECK_STATE: CheckState.LOCKED.value,
                Attr.CHECK_PROBLEM: result.problem or "account_locked",
                Attr.CHECK_FAILURES: health.check_failures + 1,
                Attr.FAILING_SINCE: health.failing_since or iso(now),
                Attr.LOCKED_UNTIL: iso(until),
                Attr.CHECK_DUE_AT: iso(until),  # then one try
            },
            expected_status=agent.status,
            remove_attributes=(Attr.CHECK_LEASE,),
            expected=self._expected(record),
        )
        metrics.add_metric(name="MailboxLocked", unit="Count", value=1)
        return agent.status

    def _transient(self, record: AgentRecord, result: ProbeResult, now: datetime) -> AgentStatus:
        agent, health = record.agent, record.health
        failures = health.check_failures + 1
        failing_since = parse_iso(health.failing_since) or now
        problem = result.problem or "unreachable"
        values: dict[str, Any] = {
            Attr.LAST_CHECK_AT: iso(now),
            Attr.CHECK_STATE: CheckState.RETRYING.value,
            Attr.CHECK_PROBLEM: problem,
            Attr.CHECK_FAILURES: failures,
            Attr.FAILING_SINCE: iso(failing_since),
            Attr.CHECK_DUE_AT: iso(now + self.policy.backoff(failures)),
        }
        if agent.status is S.VERIFIED and now - failing_since >= self.policy.disconnect_after:
            self.repo.transition(
                agent.tenant_id,
                agent.agent_id,
                S.DISCONNECTED,
                reason=problem,
                expected_version=agent.version,
                set_attributes={**values, Attr.PROBLEM_SINCE: iso(failing_since), Attr.RECONNECT_EMAILS: 0},
                remove_attributes=(Attr.CHECK_LEASE, Attr.LOCKED_UNTIL),
            )
            metrics.add_metric(name="MailboxDisconnected", unit="Count", value=1)
            self._ask_reconnect(agent.tenant_id, agent.agent_id, now)
            return S.DISCONNECTED
        self.repo.update_attributes(
            agent.tenant_id,
            agent.agent_id,
            values,
            expected_status=agent.status,
            remove_attributes=(Attr.CHECK_LEASE, Attr.LOCKED_UNTIL),
            expected=self._expected(record),
        )
        if agent.status is S.DISCONNECTED:
            self._ask_reconnect(agent.tenant_id, agent.agent_id, now)  # a reminder, when one is due
        return agent.status

    # -- reconnect emails --------------------------------------------------------------------
    def _ask_reconnect(self, tenant_id: str, agent_id: str, now: datetime) -> bool:
        try:
            request = request_reconnect(
                self.repo,
                tenant_id,
                agent_id,
                purpose=ReconnectPurpose.RECONNECT,
                policy=self.policy.reconnect,
                now=now,
            )
        except (AgentNotFoundError, IllegalTransitionError):
            return False
        return request.requested

    def _remind(self, record: AgentRecord, now: datetime) -> CheckReport:
        """needs_reconnect: the stored secret is never tried; only the bounded reminders go out."""
        agent = record.agent
        try:
            request = request_reconnect(
                self.repo,
                agent.tenant_id,
                agent.agent_id,
                purpose=ReconnectPurpose.RECONNECT,
                policy=self.policy.reconnect,
                now=now,
            )
        except (AgentNotFoundError, IllegalTransitionError):
            return CheckReport(Outcome.STALE)
        if request.requested:
            due: datetime | None = now + self.policy.reconnect.min_interval
        else:
            due = request.next_allowed_at  # None: the reminders for this problem are spent
        try:
            if due is None:
                self._unschedule(record)
            else:
                self.repo.update_attributes(
                    agent.tenant_id,
                    agent.agent_id,
                    {Attr.CHECK_DUE_AT: iso(due)},
                    expected_status=S.NEEDS_RECONNECT,
                    remove_attributes=(Attr.CHECK_LEASE,),
                )
        except ConcurrentModificationError:
            return CheckReport(Outcome.STALE)
        return CheckReport(Outcome.REMINDED, status=S.NEEDS_RECONNECT)

    def _unschedule(self, record: AgentRecord) -> None:
        """Out of the `ByCheckDue` index (while its status still holds)."""
        agent = record.agent
        with contextlib.suppress(ConcurrentModificationError):
            self.repo.update_attributes(
                agent.tenant_id,
                agent.agent_id,
                {},
                expected_status=agent.status,
                remove_attributes=(Attr.CHECK_SHARD, Attr.CHECK_DUE_AT, Attr.CHECK_LEASE),
            )
