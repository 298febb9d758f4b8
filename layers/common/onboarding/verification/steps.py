"""The verification workflow's steps (run by `functions/verify_mailbox`, one Step Functions task each).

Step Functions passes references only (tenant id, agent id, attempt); the password is read from the
credential store here and never returned. What a step learns (the settings that worked) is written to
the agent item; the task output says only where the workflow goes next.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from onboarding.agents.models import INTERNAL_ERROR, AgentRecord, AgentStatus, Attr, ConnectionState
from onboarding.agents.schedule import DEFAULT_INTERVAL, PROBLEM_ATTRIBUTES, scheduled_attributes
from onboarding.agents.store import AgentRepository
from onboarding.core.credentials import CredentialStore
from onboarding.core.errors import (
    AgentNotFoundError,
    ConcurrentModificationError,
    CredentialNotFoundError,
    IllegalTransitionError,
    InviteError,
)
from onboarding.core.observability import logger, metrics
from onboarding.exchange import (
    Diagnosis,
    ExchangeConfig,
    ExchangeContext,
    ExchangeFailure,
    ExchangeSettings,
    discover,
    verify,
)
from onboarding.exchange.trace import ExchangeTrace, TraceRecorder
from onboarding.invites.delivery import MAX_FAILED_ATTEMPTS, windows_login_in_doubt
from onboarding.invites.models import Invite
from onboarding.invites.store import InviteRepository

if TYPE_CHECKING:  # msal and requests load only when a Microsoft 365 mailbox is verified
    from onboarding.verification.microsoft import GraphVerifier

GRAPH = "graph"  # Attr.VERIFY_METHOD of a mailbox connected with "Sign in with Microsoft"
M365_NOT_CONFIGURED = "m365_not_configured"
M365_SIGN_IN_EXPIRED = "m365_sign_in_expired"

# Failures the owner can fix by entering other settings (or another password) in the settings form.
OWNER_FIXABLE = frozenset(
    {
        Diagnosis.AUTH_FAILED,
        Diagnosis.AUTODISCOVER_FAILED,
        Diagnosis.UNREACHABLE,
        Diagnosis.TLS_ERROR,
        Diagnosis.TIMEOUT,
        Diagnosis.MAILBOX_NOT_FOUND,
        Diagnosis.ACCESS_DENIED,
        Diagnosis.BLOCKED_ADDRESS,
        Diagnosis.CONFIRM_SERVER,
    }
)


class Outcome(StrEnum):
    FOUND = "found"  # autodiscovery found the server: verify it
    MANUAL = "manual"  # the owner gave the server already: verify it
    NEEDS_SETTINGS = "needs_settings"  # ask the owner for advanced settings
    VERIFIED = "verified"
    FAILED = "failed"
    STALE = "stale"  # the agent moved on (removed, or a newer attempt runs): stop quietly
    RECORDED = "recorded"


class TaskInput(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    action: Literal[
        "autodiscover",
        "verify",
        "request_settings",
        "record_verified",
        "record_failure",
        "discard_credentials",
    ]
    tenant_id: str = Field(alias="tenantId", min_length=1)
    agent_id: str = Field(alias="agentId", min_length=1)
    attempt: int = Field(ge=1)
    task_token: str | None = Field(default=None, alias="taskToken")
    code: str | None = None
    failure: dict[str, Any] | None = (
        None  # record_failure: {code} from a verdict, or {Error, Cause} from a Catch
    )


class TaskOutput(BaseModel):
    outcome: Outcome
    code: str | None = None


class VerificationSteps:
    def __init__(
        self,
        repo: AgentRepository,
        invites: InviteRepository,
        credentials: CredentialStore,
        exchange: ExchangeConfig,
        *,
        max_settings_rounds: int = 3,
        max_failed_passwords: int = MAX_FAILED_ATTEMPTS,
        graph: Callable[[], GraphVerifier] | None = None,
        check_interval: timedelta = DEFAULT_INTERVAL,
    ) -> None:
        self.check_interval = check_interval  # health checks (onboarding.health) of the verified mailbox
        self.graph = graph  # Microsoft 365 mailboxes: refresh token -> Graph (None: not configured)
        self.repo = repo
        self.credentials = credentials
        self.exchange = exchange
        self.invites = invites
        self.max_settings_rounds = max_settings_rounds
        self.max_failed_passwords = max_failed_passwords

    def run(self, task: TaskInput) -> TaskOutput:
        record = self.repo.get_record(task.tenant_id, task.agent_id)
        if record is None:
            # Removed (perhaps while the connect page was still storing the password): nothing can use a
            # stored secret any more.
            self.credentials.delete(task.tenant_id, task.agent_id)
            logger.info("Agent removed: secrets deleted", extra={"agent_id": task.agent_id})
            return TaskOutput(outcome=Outcome.STALE)
        if record.connection.connect_attempt != task.attempt:
            logger.info("Stale verification step", extra={"agent_id": task.agent_id, "action": task.action})
            return TaskOutput(outcome=Outcome.STALE)
        step = getattr(self, task.action)
        try:
            result: TaskOutput = step(task, record)
        except (AgentNotFoundError, IllegalTransitionError, ConcurrentModificationError):
            # Removed or moved on meanwhile (e.g. the dashboard deleted the agent): nothing to record.
            logger.info("Agent moved on during the step", extra={"agent_id": task.agent_id})
            return TaskOutput(outcome=Outcome.STALE)
        return result

    # -- steps -------------------------------------------------------------------------------
    def autodiscover(self, task: TaskInput, record: AgentRecord) -> TaskOutput:
        connection = record.connection
        if connection.verify_method == GRAPH:
            return TaskOutput(outcome=Outcome.FOUND)  # Microsoft 365: nothing to discover
        if connection.conn_server:
            return TaskOutput(outcome=Outcome.MANUAL)
        if record.agent.verified_at and _found_settings(connection) is not None:
            # A mailbox that connected before (the owner reconnects it): the settings that worked are kept,
            # and verification uses them; no autodiscovery again.
            logger.info("Reconnecting with the settings that worked", extra={"agent_id": task.agent_id})
            return TaskOutput(outcome=Outcome.FOUND)
        password = self.credentials.get(task.tenant_id, task.agent_id)
        trace = _recorder(record)
        try:
            settings = discover(
                record.agent.email, password.get_secret_value(), self._context(connection, trace)
            )
        except ExchangeFailure as failure:
            logger.info("Autodiscovery failed", extra={"agent_id": task.agent_id, "code": failure.code.value})
            pending = {Attr.CONFIRM_HOST: failure.host} if failure.code is Diagnosis.CONFIRM_SERVER else {}
            self._keep_trace(task, trace, pending, hint=failure.hint)
            if failure.code in (Diagnosis.AUTODISCOVER_FAILED, Diagnosis.CONFIRM_SERVER):
                return TaskOutput(outcome=Outcome.NEEDS_SETTINGS, code=failure.code.value)
            return TaskOutput(outcome=Outcome.FAILED, code=failure.code.value)
        self._keep_trace(task, trace, _settings_attributes(settings))
        return TaskOutput(outcome=Outcome.FOUND)

    def verify(self, task: TaskInput, record: AgentRecord) -> TaskOutput:
        if record.connection.verify_method == GRAPH:
            return self._verify_with_graph(task, record)
        password = self.credentials.get(task.tenant_id, task.agent_id).get_secret_value()
        email, connection = record.agent.email, record.connection
        manual = bool(connection.conn_server)
        trace = _recorder(record)
        if not manual:
            trace.continuing(_stored_trace(connection.exchange_trace))
        context = self._context(connection, trace)
        try:
            if not manual:
                found = _found_settings(connection)
                if found is None:
                    # The owner allowed a server in another domain: discover again, now allowed to use it.
                    found = discover(email, password, context)
                context = context.found(found)
            result = verify(email, password, context)
        except ExchangeFailure as failure:
            logger.info("Verification failed", extra={"agent_id": task.agent_id, "code": failure.code.value})
            self._keep_trace(task, trace, {}, hint=failure.hint)
            # Settings sent from the settings form (rounds >= 1) that do not work: ask again, a few times.
            # Settings typed on the first form fail like any first attempt: the page offers the form again.
            rounds = connection.settings_rounds
            if manual and failure.code in OWNER_FIXABLE and 1 <= rounds < self.max_settings_rounds:
                if failure.code is Diagnosis.AUTH_FAILED:
                    self._count_wrong_password(
                        record, once_per=f"{task.attempt}:round{rounds}", login_hint=failure.hint
                    )
                return TaskOutput(outcome=Outcome.NEEDS_SETTINGS, code=failure.code.value)
            return TaskOutput(outcome=Outcome.FAILED, code=failure.code.value)
        values = {**_settings_attributes(result.settings), Attr.INBOX_COUNT: result.inbox_item_count}
        self._keep_trace(task, trace, values)
        return TaskOutput(outcome=Outcome.VERIFIED)

    def _verify_with_graph(self, task: TaskInput, record: AgentRecord) -> TaskOutput:
        """Microsoft 365: redeem the stored refresh token, then Graph must name the invited mailbox."""
        from onboarding.m365.graph import GraphFailure

        if self.graph is None:
            return TaskOutput(outcome=Outcome.FAILED, code=M365_NOT_CONFIGURED)
        try:
            mailbox = self.graph().verify(task.tenant_id, task.agent_id, record.agent.email)
        except CredentialNotFoundError:
            return TaskOutput(outcome=Outcome.FAILED, code=M365_SIGN_IN_EXPIRED)
        except GraphFailure as failure:
            logger.info(
                "Graph verification failed", extra={"agent_id": task.agent_id, "code": failure.reason.value}
            )
            if failure.signed_in:
                self.repo.update_attributes(
                    task.tenant_id,
                    task.agent_id,
                    {Attr.M365_SIGNED_IN_AS: failure.signed_in},
                    expected_status=AgentStatus.CONNECTING,
                )
            return TaskOutput(outcome=Outcome.FAILED, code=failure.reason.value)
        self.repo.update_attributes(
            task.tenant_id,
            task.agent_id,
            {Attr.INBOX_COUNT: mailbox.inbox_item_count},
            expected_status=AgentStatus.CONNECTING,
        )
        return TaskOutput(outcome=Outcome.VERIFIED)

    def _context(self, connection: ConnectionState, trace: TraceRecorder) -> ExchangeContext:
        """What the owner typed (login, server, the other-domain server they allowed), budgets, the trace."""
        return ExchangeContext(
            config=self.exchange,
            username=connection.conn_username,
            server=connection.conn_server,
            confirmed_hosts=_confirmed(connection),
            trace=trace,
        )

    def _keep_trace(
        self, task: TaskInput, trace: TraceRecorder, values: dict[str, Any], *, hint: str | None = None
    ) -> None:
        """Store what was found (``values``), the IT admin's trace and the login to suggest to the owner
        (``hint``: the last verdict's, so none stays from an earlier one) with the agent, in one write."""
        self.repo.update_attributes(
            task.tenant_id,
            task.agent_id,
            {
                **values,
                Attr.EXCHANGE_TRACE: trace.snapshot().model_dump_json(),
                **({Attr.LOGIN_HINT: hint} if hint else {}),
            },
            expected_status=AgentStatus.CONNECTING,
            remove_attributes=() if hint else (Attr.LOGIN_HINT,),
        )

    def request_settings(self, task: TaskInput, record: AgentRecord) -> TaskOutput:
        """Wait for the owner: keep the task token on the agent; the connect page resumes the workflow."""
        self.repo.transition(
            task.tenant_id,
            task.agent_id,
            AgentStatus.NEEDS_SETTINGS,
            reason=task.code or Diagnosis.AUTODISCOVER_FAILED.value,
            set_attributes={
                Attr.TASK_TOKEN: task.task_token,
                Attr.ROUNDS: record.connection.settings_rounds + 1,
            },
        )
        return TaskOutput(outcome=Outcome.NEEDS_SETTINGS)

    def record_verified(self, task: TaskInput, record: AgentRecord) -> TaskOutput:
        self._consume_invite(record)
        # Checked from now on (the `ByCheckDue` index), at the agent's own phase of the interval; a reconnect
        # clears the problem the checks had recorded.
        self.repo.transition(
            task.tenant_id,
            task.agent_id,
            AgentStatus.VERIFIED,
            # Back on the check schedule; a reconnect ends the problem the checks found (its reminders count
            # from zero next time).
            set_attributes=scheduled_attributes(task.agent_id, datetime.now(UTC), self.check_interval),
            remove_attributes=(Attr.TASK_TOKEN, *PROBLEM_ATTRIBUTES),
        )
        metrics.add_metric(name="MailboxVerified", unit="Count", value=1)
        return TaskOutput(outcome=Outcome.RECORDED)

    def record_failure(self, task: TaskInput, record: AgentRecord) -> TaskOutput:
        failure = task.failure or {}
        code = str(failure.get("code") or _code_from_error(failure))
        # Idempotent per attempt: a retried step (the write landed, the answer was lost) neither counts the
        # wrong password again nor trips over the transition it already made.
        if code == Diagnosis.AUTH_FAILED.value:
            # The verdict's login hint was stored with the agent by the step that failed (this attempt's).
            self._count_wrong_password(
                record, once_per=f"{task.attempt}:failure", login_hint=record.connection.login_hint
            )
        if record.agent.status is not AgentStatus.FAILED:
            self.repo.transition(
                task.tenant_id,
                task.agent_id,
                AgentStatus.FAILED,
                reason=code,
                remove_attributes=(Attr.TASK_TOKEN,),
            )
        # A password that did not connect is of no use and must not linger (a retry asks for it again).
        self.credentials.delete(task.tenant_id, task.agent_id)
        metrics.add_metric(name="MailboxVerificationFailed", unit="Count", value=1)
        # The dashboard's "failures by reason" (template.yaml OperationsDashboard) counts these lines.
        logger.info("Verification failure recorded", extra={"agent_id": task.agent_id, "reason": code})
        return TaskOutput(outcome=Outcome.RECORDED, code=code)

    # -- the invite the owner connected with ------------------------------------------------------
    def _invite(self, record: AgentRecord) -> Invite | None:
        token_hash = record.connection.connect_invite_hash
        return self.invites.get(token_hash) if token_hash else None

    def _consume_invite(self, record: AgentRecord) -> None:
        """The link has done its job: used up now, so it cannot connect the mailbox again."""
        invite = self._invite(record)
        if invite is None:
            return
        try:
            self.invites.consume(invite, at=datetime.now(UTC), max_failed_attempts=self.max_failed_passwords)
        except InviteError as error:  # already used or replaced: the verification stands all the same
            logger.info(
                "Invite not consumed", extra={"agent_id": record.agent.agent_id, "reason": error.code}
            )

    def discard_credentials(self, task: TaskInput, record: AgentRecord) -> TaskOutput:
        """Record Failure kept failing: at least no password stays stored for an attempt that is over."""
        self.credentials.delete(task.tenant_id, task.agent_id)
        logger.error("Failure not recorded; secrets deleted", extra={"agent_id": task.agent_id})
        return TaskOutput(outcome=Outcome.RECORDED)

    def _count_wrong_password(self, record: AgentRecord, *, once_per: str, login_hint: str | None) -> None:
        """Wrong passwords count against the invite; after N the link locks (protects the account).

        A refusal that may be the login form rather than the password (the server named its Windows domain
        and the login was the email address: `windows_login_in_doubt`) is not counted the first time on a
        link; every later one is."""
        invite = self._invite(record)
        if invite is None:
            return
        if windows_login_in_doubt(login_hint) and self.invites.excuse_once(invite, key=once_per):
            logger.info(
                "Refused login in doubt: not counted",
                extra={"agent_id": record.agent.agent_id, "key": once_per},
            )
            return
        try:
            attempts = self.invites.add_failed_attempt(
                invite, max_failed_attempts=self.max_failed_passwords, once_per=once_per
            )
        except InviteError as error:
            logger.info(
                "Wrong password not counted", extra={"agent_id": record.agent.agent_id, "reason": error.code}
            )
            return
        logger.warning(
            "Wrong password", extra={"agent_id": record.agent.agent_id, "failed_attempts": attempts}
        )


def _recorder(record: AgentRecord) -> TraceRecorder:
    return TraceRecorder(record.agent.email.rpartition("@")[2])


def _confirmed(connection: ConnectionState) -> tuple[str, ...]:
    return (connection.confirmed_host,) if connection.confirmed_host else ()


def _stored_trace(text: str | None) -> ExchangeTrace | None:
    if not text:
        return None
    try:
        return ExchangeTrace.model_validate_json(text)
    except ValueError:
        return None


def _found_settings(connection: ConnectionState) -> ExchangeSettings | None:
    """The settings discovery recorded, if it did."""
    if not connection.ews_url or not connection.auth_type:
        return None
    return ExchangeSettings(
        ews_url=connection.ews_url,
        server=connection.ews_url.split("/")[2],
        auth_type=connection.auth_type,
        server_build=connection.server_build,
        username=connection.exchange_username or "",
    )


def _settings_attributes(settings: ExchangeSettings) -> dict[str, Any]:
    return {
        Attr.EWS_URL: settings.ews_url,
        Attr.AUTH_TYPE: settings.auth_type,
        Attr.SERVER_BUILD: settings.server_build,
        Attr.EXCHANGE_USERNAME: settings.username,
    }


def _code_from_error(error: dict[str, Any]) -> str:
    """A Catch in the state machine hands over {Error, Cause} (Cause may hold a stack: never kept). Each
    task's timeout has its own Catch that names it (discovery/verification/settings_timeout); what
    reaches here unnamed is ours to fix."""
    logger.warning("Step failed", extra={"error": str(error.get("Error", ""))[:100]})
    return INTERNAL_ERROR
