"""The verification workflow's steps (run by `functions/verify_mailbox`, one Step Functions task each).

Step Functions passes references only (tenant id, agent id, attempt); the password is read from the
credential store here and never returned. What a step learns (the settings that worked) is written to
the agent item; the task output says only where the workflow goes next.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from onboarding.credentials import CredentialStore
from onboarding.errors import (
    AgentNotFoundError,
    ConcurrentModificationError,
    IllegalTransitionError,
    InviteError,
)
from onboarding.exchange import Diagnosis, ExchangeConfig, ExchangeFailure, ExchangeSettings, discover, verify
from onboarding.invite_models import Invite
from onboarding.invite_store import InviteRepository
from onboarding.invites import MAX_FAILED_ATTEMPTS
from onboarding.models import INTERNAL_ERROR, SETTINGS_TIMEOUT, AgentRecord, AgentStatus, Attr
from onboarding.observability import logger, metrics
from onboarding.store import AgentRepository

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

    action: Literal["autodiscover", "verify", "request_settings", "record_verified", "record_failure"]
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
    ) -> None:
        self.repo = repo
        self.credentials = credentials
        self.exchange = exchange
        self.invites = invites
        self.max_settings_rounds = max_settings_rounds
        self.max_failed_passwords = max_failed_passwords

    def run(self, task: TaskInput) -> TaskOutput:
        record = self.repo.get_record(task.tenant_id, task.agent_id)
        if record is None or record.connection.connect_attempt != task.attempt:
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
        if connection.conn_server:
            return TaskOutput(outcome=Outcome.MANUAL)
        password = self.credentials.get(task.tenant_id, task.agent_id)
        try:
            settings = discover(
                record.agent.email,
                password.get_secret_value(),
                connection.conn_username,
                config=self.exchange,
            )
        except ExchangeFailure as failure:
            logger.info("Autodiscovery failed", extra={"agent_id": task.agent_id, "code": failure.code.value})
            if failure.code is Diagnosis.AUTODISCOVER_FAILED:
                return TaskOutput(outcome=Outcome.NEEDS_SETTINGS, code=failure.code.value)
            return TaskOutput(outcome=Outcome.FAILED, code=failure.code.value)
        self.repo.update_attributes(
            task.tenant_id,
            task.agent_id,
            _settings_attributes(settings),
            expected_status=AgentStatus.CONNECTING,
        )
        return TaskOutput(outcome=Outcome.FOUND)

    def verify(self, task: TaskInput, record: AgentRecord) -> TaskOutput:
        password = self.credentials.get(task.tenant_id, task.agent_id).get_secret_value()
        email, connection = record.agent.email, record.connection
        manual = bool(connection.conn_server)
        try:
            if connection.conn_server:
                result = verify(
                    email,
                    password,
                    connection.conn_username or email,
                    connection.conn_server,
                    config=self.exchange,
                )
            else:
                result = verify(
                    email,
                    password,
                    connection.exchange_username or email,
                    ews_url=connection.ews_url,
                    auth_type=connection.auth_type,
                    config=self.exchange,
                )
        except ExchangeFailure as failure:
            logger.info("Verification failed", extra={"agent_id": task.agent_id, "code": failure.code.value})
            # Settings sent from the settings form (rounds >= 1) that do not work: ask again, a few times.
            # Settings typed on the first form fail like any first attempt: the page offers the form again.
            rounds = connection.settings_rounds
            if manual and failure.code in OWNER_FIXABLE and 1 <= rounds < self.max_settings_rounds:
                if failure.code is Diagnosis.AUTH_FAILED:
                    self._count_wrong_password(record)
                return TaskOutput(outcome=Outcome.NEEDS_SETTINGS, code=failure.code.value)
            return TaskOutput(outcome=Outcome.FAILED, code=failure.code.value)
        values = {**_settings_attributes(result.settings), Attr.INBOX_COUNT: result.inbox_item_count}
        self.repo.update_attributes(
            task.tenant_id, task.agent_id, values, expected_status=AgentStatus.CONNECTING
        )
        return TaskOutput(outcome=Outcome.VERIFIED)

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
        self.repo.transition(
            task.tenant_id, task.agent_id, AgentStatus.VERIFIED, remove_attributes=(Attr.TASK_TOKEN,)
        )
        metrics.add_metric(name="MailboxVerified", unit="Count", value=1)
        return TaskOutput(outcome=Outcome.RECORDED)

    def record_failure(self, task: TaskInput, record: AgentRecord) -> TaskOutput:
        failure = task.failure or {}
        code = str(failure.get("code") or _code_from_error(failure))
        if code == Diagnosis.AUTH_FAILED.value:
            self._count_wrong_password(record)
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

    def _count_wrong_password(self, record: AgentRecord) -> None:
        """Wrong passwords count against the invite; after N the link locks (protects the account)."""
        invite = self._invite(record)
        if invite is None:
            return
        try:
            attempts = self.invites.add_failed_attempt(invite, max_failed_attempts=self.max_failed_passwords)
        except InviteError as error:
            logger.info(
                "Wrong password not counted", extra={"agent_id": record.agent.agent_id, "reason": error.code}
            )
            return
        logger.warning(
            "Wrong password", extra={"agent_id": record.agent.agent_id, "failed_attempts": attempts}
        )


def _settings_attributes(settings: ExchangeSettings) -> dict[str, Any]:
    return {
        Attr.EWS_URL: settings.ews_url,
        Attr.AUTH_TYPE: settings.auth_type,
        Attr.SERVER_BUILD: settings.server_build,
        Attr.EXCHANGE_USERNAME: settings.username,
    }


def _code_from_error(error: dict[str, Any]) -> str:
    """A Catch in the state machine hands over {Error, Cause}; Cause may hold a stack: keep only the type."""
    name = str(error.get("Error", ""))
    return SETTINGS_TIMEOUT if name in {"States.Timeout", "States.HeartbeatTimeout"} else INTERNAL_ERROR
