"""The agent aggregate: its fields, its status lifecycle, and the API's input and output shapes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

import email_validator
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

# `.test` is reserved for testing (RFC 2606); the Exchange simulator's mailboxes live there. Allowing it
# costs nothing in production (no real mailbox can have such an address) and keeps one code path.
email_validator.SPECIAL_USE_DOMAIN_NAMES = [
    d for d in email_validator.SPECIAL_USE_DOMAIN_NAMES if d != "test"
]

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _no_control_chars(value: str) -> str:
    if _CONTROL_CHARS.search(value):
        raise ValueError("must not contain control characters (tabs, line breaks, ...)")
    return value


AgentName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_control_chars),
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
    FAILED = "failed"
    REMOVED = "removed"


S = AgentStatus
# The whole lifecycle. Anything not listed here is an illegal transition (a typed error, never a write).
TRANSITIONS: dict[AgentStatus, frozenset[AgentStatus]] = {
    S.INVITE_PENDING: frozenset({S.INVITED, S.INVITE_FAILED, S.INVITE_BOUNCED, S.REMOVED}),
    # -> invite_pending: the dashboard resends the invite (a new link; see onboarding.invites). Not from
    # invite_bounced: that address refused mail, and the agent has to be added again with another one.
    S.INVITED: frozenset({S.CONNECTING, S.INVITE_FAILED, S.INVITE_BOUNCED, S.INVITE_PENDING, S.REMOVED}),
    S.INVITE_FAILED: frozenset({S.INVITE_PENDING, S.REMOVED}),
    S.INVITE_BOUNCED: frozenset({S.REMOVED}),
    S.CONNECTING: frozenset({S.NEEDS_SETTINGS, S.VERIFIED, S.FAILED, S.REMOVED}),
    # needs_settings -> failed: the owner never sent the settings and the wait timed out.
    S.NEEDS_SETTINGS: frozenset({S.CONNECTING, S.FAILED, S.REMOVED}),
    S.VERIFIED: frozenset({S.REMOVED}),
    S.FAILED: frozenset({S.CONNECTING, S.INVITE_PENDING, S.REMOVED}),
    S.REMOVED: frozenset(),
}


def can_transition(current: AgentStatus, target: AgentStatus) -> bool:
    return target in TRANSITIONS[current]


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NewAgent(_ApiModel):
    """Body of `POST /agents`. The tenant never comes from here: only from the verified token."""

    name: AgentName = Field(description="Display name of the person or team behind the mailbox")
    email: EmailStr = Field(description="The mailbox address; compared case-insensitively")
    type: Literal["ms_exchange"] = Field(description="Mailbox provider; only `ms_exchange` for now")


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

    def api_dict(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


class AgentPage(_ApiModel):
    items: list[Agent]
    next_token: str | None = Field(default=None, alias="nextToken")


class ErrorDetail(_ApiModel):
    field: str | None = None
    message: str
    type: str | None = None


class ErrorBody(_ApiModel):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(_ApiModel):
    error: ErrorBody
