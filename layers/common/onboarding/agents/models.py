"""The agent aggregate: its fields, its status lifecycle, the service-private state kept with it
(`AgentRecord`), and the API's input and output shapes."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from onboarding.agents.problems import problem_for
from onboarding.core.email_address import EmailAddress
from onboarding.exchange.trace import ExchangeTrace

CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _no_control_chars(value: str) -> str:
    if CONTROL_CHARS.search(value):
        raise ValueError("must not contain control characters (tabs, line breaks, ...)")
    return value


AgentName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_control_chars),
]


def _plain_text(value: str) -> str:
    """No control characters, and no invisible formatting either (bidirectional overrides, zero-width
    characters, line and paragraph separators): a name shown in an email subject must read as it is."""
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise ValueError("must not contain control or invisible formatting characters (line breaks, ...)")
    return value


# Who invites, as the invite email and the connect page name them (a team or company): shown as text only.
InviterName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_plain_text),
]
TenantId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
AgentId = Annotated[str, StringConstraints(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")]


class AgentType(StrEnum):
    MS_EXCHANGE = "ms_exchange"


class AgentStatus(StrEnum):
    INVITE_PENDING = "invite_pending"
    INVITED = "invited"
    INVITE_FAILED = "invite_failed"
    INVITE_BOUNCED = "invite_bounced"
    CONNECTING = "connecting"
    NEEDS_SETTINGS = "needs_settings"
    VERIFIED = "verified"
    # After onboarding, what the scheduled health checks find (onboarding.health): the server or Microsoft
    # refused the stored password or token (never tried again; the owner is asked to reconnect) ...
    NEEDS_RECONNECT = "needs_reconnect"
    # ... or the mailbox could not be reached for longer than the disconnect threshold (checks go on).
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    REMOVED = "removed"


S = AgentStatus
# The whole lifecycle. Anything not listed here is an illegal transition (a typed error, never a write).
TRANSITIONS: dict[AgentStatus, frozenset[AgentStatus]] = {
    S.INVITE_PENDING: frozenset({S.INVITED, S.INVITE_FAILED, S.INVITE_BOUNCED, S.REMOVED}),
    # -> invite_pending: the dashboard resends the invite (a new link; see onboarding.invites.delivery). Not from
    # invite_bounced: that address refused mail, and the agent has to be added again with another one.
    S.INVITED: frozenset({S.CONNECTING, S.INVITE_FAILED, S.INVITE_BOUNCED, S.INVITE_PENDING, S.REMOVED}),
    S.INVITE_FAILED: frozenset({S.INVITE_PENDING, S.REMOVED}),
    S.INVITE_BOUNCED: frozenset({S.REMOVED}),
    S.CONNECTING: frozenset({S.NEEDS_SETTINGS, S.VERIFIED, S.FAILED, S.REMOVED}),
    # needs_settings -> failed: the owner never sent the settings and the wait timed out.
    S.NEEDS_SETTINGS: frozenset({S.CONNECTING, S.FAILED, S.REMOVED}),
    # verified -> connecting: the owner reconnects with a reconnect or password-expiry link.
    S.VERIFIED: frozenset({S.NEEDS_RECONNECT, S.DISCONNECTED, S.CONNECTING, S.REMOVED}),
    S.NEEDS_RECONNECT: frozenset({S.CONNECTING, S.REMOVED}),
    # disconnected -> verified: a later check reached the mailbox again (recovered).
    S.DISCONNECTED: frozenset({S.VERIFIED, S.NEEDS_RECONNECT, S.CONNECTING, S.REMOVED}),
    S.FAILED: frozenset({S.CONNECTING, S.INVITE_PENDING, S.REMOVED}),
    S.REMOVED: frozenset(),
}


def can_transition(current: AgentStatus, target: AgentStatus) -> bool:
    return target in TRANSITIONS[current]


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Reasons (`statusReason`) the service sets itself, next to the Exchange diagnoses.
SETTINGS_TIMEOUT = "settings_timeout"  # the owner did not send the advanced settings in time
DISCOVERY_TIMEOUT = "discovery_timeout"  # the autodiscovery task ran past its Step Functions timeout
VERIFICATION_TIMEOUT = "verification_timeout"  # the verification task ran past its timeout
INTERNAL_ERROR = "internal_error"


class _StateModel(BaseModel):
    """Service-private attributes of the agent item: stored under the camelCase of the field's name."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True, defer_build=True
    )


class InviteState(_StateModel):
    """The invite attributes of an agent item (defaults fit items written before invites)."""

    # Who invites: `inviterName` of POST /agents, else the dashboard user's token claim when the agent was added.
    tenant_name: str | None = None
    invite_version: int = Field(default=1, ge=1)  # 1 when added, +1 per resend; only its link works
    invite_attempts: int = Field(default=0, ge=0)  # failed sends of this version that will be retried
    invite_requested_at: str | None = None
    invite_sent_at: str | None = None
    invite_expires_at: str | None = None
    # The invite version whose email went to SES (claimed just before the call), and the one SES accepted
    # (recorded right after): what a retried delivery decides with (onboarding.invites.delivery.deliver_invite).
    invite_sending: int | None = None
    invite_accepted: int | None = None

    @classmethod
    def first(cls, tenant_name: str | None) -> InviteState:
        """What `add_agent` stores with a new agent so the stream asks for invite version 1."""
        return cls(tenant_name=tenant_name, invite_version=1, invite_requested_at=utcnow())


class ConnectionState(_StateModel):
    """Where the connection of the mailbox stands: the attempt, what the owner typed, what was found."""

    connect_attempt: int = Field(default=0, ge=0)  # names the workflow execution; stale steps stop
    settings_rounds: int = Field(default=0, ge=0)  # times the owner was asked for settings
    # The Step Functions task token of a workflow waiting for the owner's settings (never logged).
    task_token: str | None = Field(default=None, repr=False)
    conn_username: str | None = None  # advanced settings typed by the owner
    conn_server: str | None = None
    connect_invite_hash: str | None = None  # the invite used to connect (its SHA-256 key, not the token)
    # While the connect page starts the attempt's workflow: the latest time (ISO UTC) by which the start
    # is done or its starter is dead (onboarding.agents.start_watch). Removed once the workflow is started.
    start_deadline: str | None = None
    ews_url: str | None = None  # what discovery / verification found
    auth_type: str | None = None
    server_build: str | None = None
    exchange_username: str | None = None
    inbox_item_count: int | None = None
    # How the mailbox is verified: "ews" (password, Exchange) or "graph" (Sign in with Microsoft).
    verify_method: str | None = None
    m365_signed_in_as: str | None = None  # the account signed in with, when it was not the invited one
    # A server in another domain that discovery met (reason confirm_server), and the one the owner allowed.
    confirm_host: str | None = None
    confirmed_host: str | None = None
    # The login to suggest when the last verdict refused an email address as the login ("CONTOSO\\bea": the
    # Windows domain the server's NTLM challenge named, or DOMAIN\\bea when it named none).
    login_hint: str | None = None
    # The IT admin's trace of the last discovery/verification (onboarding.exchange.trace.ExchangeTrace as
    # JSON, size-bounded, secret-free).
    exchange_trace: str | None = Field(default=None, repr=False)


class HealthState(_StateModel):
    """What the scheduled health checks keep on a connected agent (onboarding.health), and the reconnect
    emails they ask for. Times are ISO UTC strings like the other attributes."""

    # The due-checks index (`ByCheckDue`, sparse): present only while the agent is checked on a schedule.
    # `checkShard` spreads the agents over a few partitions ("CHECK#07"), `checkDueAt` is the next check.
    check_shard: str | None = None
    check_due_at: str | None = None
    check_lease: str | None = None  # the dispatched check's id while it is on the queue
    last_check_at: str | None = None
    last_success_at: str | None = None
    failing_since: str | None = None  # first failed check of the current run of failures
    check_failures: int = Field(default=0, ge=0)  # consecutive failed checks
    # ok | retrying (transient failures, tick kept) | locked (account locked: not tried before lockedUntil)
    check_state: str | None = None
    check_problem: str | None = None  # the reason of the last failed check (a diagnosis code)
    locked_until: str | None = None
    manual_check_at: str | None = None  # the last `POST /agents/{id}/check` (rate limit)
    password_expires_at: str | None = None  # from EWS GetPasswordExpirationDate, when the server offers it
    expiry_warned_for: str | None = None  # the expiry date the owner was warned about (once per date)
    # Reconnect emails (onboarding.invites.reconnect): a new version asks the stream to send one.
    reconnect_version: int = Field(default=0, ge=0)
    reconnect_purpose: str | None = None  # reconnect | password_expiry
    reconnect_requested_at: str | None = None
    reconnect_sent_at: str | None = None
    reconnect_emails: int = Field(default=0, ge=0)  # emails sent for the current problem (first + reminders)
    problem_since: str | None = None  # when the mailbox stopped connecting, for the email's wording
    # Delivery of the requested email (onboarding.invites.reconnect.deliver_reconnect), as for invites: the
    # version waiting for its email (present from the request until it is handled: the stream's filter
    # wakes the sender when it appears), the version claimed just before SES and the one SES accepted, and
    # failed sends of the pending version.
    reconnect_pending: int | None = None
    reconnect_sending: int | None = None
    reconnect_accepted: int | None = None
    reconnect_attempts: int = Field(default=0, ge=0)


def _stored(model: type[BaseModel], field: str) -> str:
    alias = model.model_fields[field].alias
    if not alias:
        raise TypeError(f"{model.__name__}.{field} has no stored name")
    return alias


class Attr:
    """Stored names of the service-private attributes, for writes (the API never returns them)."""

    TENANT_NAME = _stored(InviteState, "tenant_name")
    INVITE_VERSION = _stored(InviteState, "invite_version")
    INVITE_REQUESTED_AT = _stored(InviteState, "invite_requested_at")
    INVITE_ATTEMPTS = _stored(InviteState, "invite_attempts")
    INVITE_SENT_AT = _stored(InviteState, "invite_sent_at")
    INVITE_EXPIRES_AT = _stored(InviteState, "invite_expires_at")
    INVITE_SENDING = _stored(InviteState, "invite_sending")
    INVITE_ACCEPTED = _stored(InviteState, "invite_accepted")
    ATTEMPT = _stored(ConnectionState, "connect_attempt")
    ROUNDS = _stored(ConnectionState, "settings_rounds")
    TASK_TOKEN = _stored(ConnectionState, "task_token")
    USERNAME = _stored(ConnectionState, "conn_username")
    SERVER = _stored(ConnectionState, "conn_server")
    INVITE_HASH = _stored(ConnectionState, "connect_invite_hash")
    START_DEADLINE = _stored(ConnectionState, "start_deadline")
    EWS_URL = _stored(ConnectionState, "ews_url")
    AUTH_TYPE = _stored(ConnectionState, "auth_type")
    SERVER_BUILD = _stored(ConnectionState, "server_build")
    EXCHANGE_USERNAME = _stored(ConnectionState, "exchange_username")
    INBOX_COUNT = _stored(ConnectionState, "inbox_item_count")
    VERIFY_METHOD = _stored(ConnectionState, "verify_method")
    M365_SIGNED_IN_AS = _stored(ConnectionState, "m365_signed_in_as")
    CONFIRM_HOST = _stored(ConnectionState, "confirm_host")
    CONFIRMED_HOST = _stored(ConnectionState, "confirmed_host")
    EXCHANGE_TRACE = _stored(ConnectionState, "exchange_trace")
    LOGIN_HINT = _stored(ConnectionState, "login_hint")
    CHECK_SHARD = _stored(HealthState, "check_shard")
    CHECK_DUE_AT = _stored(HealthState, "check_due_at")
    CHECK_LEASE = _stored(HealthState, "check_lease")
    LAST_CHECK_AT = _stored(HealthState, "last_check_at")
    LAST_SUCCESS_AT = _stored(HealthState, "last_success_at")
    FAILING_SINCE = _stored(HealthState, "failing_since")
    CHECK_FAILURES = _stored(HealthState, "check_failures")
    CHECK_STATE = _stored(HealthState, "check_state")
    CHECK_PROBLEM = _stored(HealthState, "check_problem")
    LOCKED_UNTIL = _stored(HealthState, "locked_until")
    MANUAL_CHECK_AT = _stored(HealthState, "manual_check_at")
    PASSWORD_EXPIRES_AT = _stored(HealthState, "password_expires_at")
    EXPIRY_WARNED_FOR = _stored(HealthState, "expiry_warned_for")
    RECONNECT_VERSION = _stored(HealthState, "reconnect_version")
    RECONNECT_PURPOSE = _stored(HealthState, "reconnect_purpose")
    RECONNECT_REQUESTED_AT = _stored(HealthState, "reconnect_requested_at")
    RECONNECT_SENT_AT = _stored(HealthState, "reconnect_sent_at")
    RECONNECT_EMAILS = _stored(HealthState, "reconnect_emails")
    PROBLEM_SINCE = _stored(HealthState, "problem_since")
    RECONNECT_PENDING = _stored(HealthState, "reconnect_pending")
    RECONNECT_SENDING = _stored(HealthState, "reconnect_sending")
    RECONNECT_ACCEPTED = _stored(HealthState, "reconnect_accepted")
    RECONNECT_ATTEMPTS = _stored(HealthState, "reconnect_attempts")


class _ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class NewAgent(_ApiModel):
    """Body of `POST /agents`. The tenant never comes from here: only from the verified token."""

    name: AgentName = Field(description="Display name of the person or team behind the mailbox")
    email: EmailAddress = Field(description="The mailbox address; compared case-insensitively")
    type: Literal["ms_exchange"] = Field(description="Mailbox provider; only `ms_exchange` for now")
    inviter_name: InviterName | None = Field(
        default=None,
        alias="inviterName",
        description="Who invites, as the invite email and the connect page name them (a team or company, "
        "1-100 characters, no control characters). Without it: the display-name claim of the caller's token "
        "(the TenantNameClaim parameter), else a neutral wording.",
        examples=["Contoso Support"],
    )


class AgentHealth(_ApiModel):
    """The health of a connected mailbox as the API shows it: built from `HealthState`."""

    last_check_at: str | None = Field(
        default=None, alias="lastCheckAt", description="The last check (ISO UTC)"
    )
    last_success_at: str | None = Field(
        default=None, alias="lastSuccessAt", description="The last check that reached the mailbox"
    )
    failing_since: str | None = Field(
        default=None,
        alias="failingSince",
        description="The first failed check of the current run of failures",
    )
    next_check_at: str | None = Field(
        default=None, alias="nextCheckAt", description="When the mailbox is checked next; null: not scheduled"
    )
    password_expires_at: str | None = Field(
        default=None,
        alias="passwordExpiresAt",
        description="When the mailbox password expires, where the Exchange server tells (EWS "
        "GetPasswordExpirationDate)",
    )
    state: str | None = Field(
        default=None,
        description="The checks' state: `ok`, `retrying` (failures that may pass; the mailbox keeps its tick) or "
        "`locked` (the account is locked: not tried before `lockedUntil`); null before the first check",
    )
    locked_until: str | None = Field(default=None, alias="lockedUntil")
    problem: str | None = Field(
        default=None,
        description="What the last failed check found, in words (null when the last check succeeded)",
        examples=["The server no longer accepts the password."],
    )
    problem_code: str | None = Field(
        default=None, alias="problemCode", description="The same as a stable code, e.g. `auth_failed`"
    )
    reconnect_email_requested_at: str | None = Field(
        default=None,
        alias="reconnectEmailRequestedAt",
        description="When the last reconnect (or password-expiry) email was asked for",
    )
    reconnect_email_sent_at: str | None = Field(
        default=None, alias="reconnectEmailSentAt", description="When the last one was sent"
    )
    reconnect_email_purpose: Literal["reconnect", "password_expiry"] | None = Field(
        default=None, alias="reconnectEmailPurpose"
    )

    @classmethod
    def of(cls, state: HealthState, *, email: str = "") -> AgentHealth:
        problem = (
            problem_for(state.check_problem, email=email).sentence
            if state.check_problem and state.check_state != "ok"
            else None
        )
        purpose = state.reconnect_purpose
        return cls(
            last_check_at=state.last_check_at,
            last_success_at=state.last_success_at,
            failing_since=state.failing_since,
            next_check_at=state.check_due_at,
            password_expires_at=state.password_expires_at,
            state=state.check_state,
            locked_until=state.locked_until,
            problem=problem,
            problem_code=state.check_problem if problem else None,
            reconnect_email_requested_at=state.reconnect_requested_at,
            reconnect_email_sent_at=state.reconnect_sent_at,
            reconnect_email_purpose=purpose if purpose in ("reconnect", "password_expiry") else None,
        )


# The HealthState attributes `AgentHealth` is built from: read with the agent's own (list, get).
HEALTH_FIELDS = frozenset(
    {
        "lastCheckAt",
        "lastSuccessAt",
        "failingSince",
        "checkDueAt",
        "passwordExpiresAt",
        "checkState",
        "lockedUntil",
        "checkProblem",
        "reconnectRequestedAt",
        "reconnectSentAt",
        "reconnectPurpose",
    }
)


class Agent(_ApiModel):
    """A monitored mailbox, as stored and as returned by the API."""

    agent_id: AgentId = Field(alias="agentId")
    tenant_id: TenantId = Field(alias="tenantId")
    name: AgentName
    # Validated as an address on the way in (NewAgent); stored values are not parsed again on every read.
    email: str = Field(max_length=320)
    type: AgentType
    status: AgentStatus
    status_reason: str | None = Field(default=None, alias="statusReason")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
    verified_at: str | None = Field(default=None, alias="verifiedAt")
    version: int = Field(ge=1)
    sign_in: Literal["password", "microsoft"] | None = Field(
        default=None,
        alias="signIn",
        description="How the owner last connected the mailbox: with its password (Exchange) or with Sign in "
        "with Microsoft (Microsoft 365: a refresh token is kept, no password); null before the first attempt",
    )

    health: AgentHealth = Field(
        default_factory=lambda: AgentHealth(),
        description="What the scheduled checks found since the mailbox connected (all null before the first "
        "check), and the reconnect emails sent",
    )

    def api_dict(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


# Attributes that belong to the agent model; anything else on the item is private to the service. (`health` is
# not an attribute: it is built from the HealthState attributes, HEALTH_FIELDS.)
AGENT_FIELDS = frozenset(f.alias or name for name, f in Agent.model_fields.items()) - {"health"}


class AgentRecord(BaseModel):
    """An agent with the service-private state kept on its item: what the repository returns and takes."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    agent: Agent
    invite: InviteState = Field(default_factory=InviteState)
    connection: ConnectionState = Field(default_factory=ConnectionState)
    health: HealthState = Field(default_factory=HealthState)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> AgentRecord:
        """The record of a deserialized item (keys and other entities' attributes are ignored)."""
        agent_values = {k: v for k, v in values.items() if k in AGENT_FIELDS}
        health = HealthState.model_validate(values)
        agent = Agent.model_validate(agent_values)
        return cls(
            agent=agent.model_copy(update={"health": AgentHealth.of(health, email=agent.email)}),
            invite=InviteState.model_validate(values),
            connection=ConnectionState.model_validate(values),
            health=health,
        )

    def values(self) -> dict[str, Any]:
        """The item's attributes (without keys): the agent's fields and the private state explicitly set."""
        return {
            **self.invite.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True),
            **self.connection.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True),
            **self.health.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True),
            **self.agent.model_dump(mode="json", by_alias=True, exclude={"health"}),
        }


class AgentTrace(_ApiModel):
    """`GET /agents/{agentId}/trace`: what the last discovery/verification did, step by step, for IT."""

    agent_id: AgentId = Field(alias="agentId")
    trace: ExchangeTrace | None = Field(description="None before the first connection attempt")


class ReconnectEmailRequested(_ApiModel):
    """`POST /agents/{agentId}/reconnect`: the email is on its way."""

    agent: Agent
    reconnect_email_requested_at: str = Field(
        alias="reconnectEmailRequestedAt",
        description="When it was asked for; `agent.health` says when it was sent",
    )


class AgentPage(_ApiModel):
    items: list[Agent]
    next_token: str | None = Field(default=None, alias="nextToken")


class ErrorDetail(_ApiModel):
    field: str | None = None
    message: str
    type: str | None = None
    agent_id: str | None = Field(
        default=None,
        alias="agentId",
        description="The agent that already has this mailbox (409 duplicate_agent)",
    )


class ErrorBody(_ApiModel):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(_ApiModel):
    error: ErrorBody


class GatewayError(BaseModel):
    """What API Gateway itself answers (e.g. the JWT authorizer's 401); its body cannot be customised."""

    model_config = ConfigDict(defer_build=True)
    message: str
