"""Shapes of the invite flow: what a stream record asks for, the stored invite, SES notifications.

Agent items carry a few service-private invite attributes next to the `Agent` fields (the API never
returns them):

    tenantName       who invites, from the dashboard user's token when the agent was added
    inviteVersion    1 when added, +1 per resend; only an invite of the current version is valid
    inviteAttempts   sends of the current version that failed and will be retried
    inviteSentAt, inviteExpiresAt   set when the email of the current version went out
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from onboarding.models import AgentId, TenantId

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

TenantName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def clean_tenant_name(value: object) -> str | None:
    """The display name from a token claim, or None when it is missing or unusable in an email."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > 100 or _CONTROL_CHARS.search(value):
        return None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class AgentInviteState(_Model):
    """The private invite attributes of an agent item (defaults fit items written before invites)."""

    tenant_name: str | None = Field(default=None, alias="tenantName")
    invite_version: int = Field(default=1, ge=1, alias="inviteVersion")
    invite_attempts: int = Field(default=0, ge=0, alias="inviteAttempts")


class InviteRequested(_Model):
    """The new image of an agent stream record that asks for an invite (see FilterCriteria)."""

    tenant_id: TenantId = Field(alias="tenantId")
    agent_id: AgentId = Field(alias="agentId")
    invite_version: int = Field(default=1, ge=1, alias="inviteVersion")


class Invite(_Model):
    """An issued invite link, stored under the SHA-256 of its token (never the token)."""

    token_hash: str = Field(alias="tokenHash", pattern=r"^[0-9a-f]{64}$")
    tenant_id: TenantId = Field(alias="tenantId")
    agent_id: AgentId = Field(alias="agentId")
    invite_version: int = Field(ge=1, alias="inviteVersion")
    created_at: datetime = Field(alias="createdAt")
    expires_at: datetime = Field(alias="expiresAt")
    failed_attempts: int = Field(default=0, ge=0, alias="failedAttempts")
    used_at: datetime | None = Field(default=None, alias="usedAt")


class DeliveryOutcome(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"  # stale or replayed record: nothing to do


# -- SES event publishing (configuration set -> SNS) -------------------------------------------
class _SesRecipient(_Model):
    email_address: str = Field(alias="emailAddress")


class _SesBounce(_Model):
    bounce_type: str = Field(alias="bounceType")  # Permanent | Transient | Undetermined
    bounce_sub_type: str | None = Field(default=None, alias="bounceSubType")
    bounced_recipients: list[_SesRecipient] = Field(default_factory=list, alias="bouncedRecipients")


class _SesComplaint(_Model):
    complained_recipients: list[_SesRecipient] = Field(default_factory=list, alias="complainedRecipients")
    complaint_feedback_type: str | None = Field(default=None, alias="complaintFeedbackType")


class _SesMail(_Model):
    message_id: str = Field(alias="messageId")
    destination: list[str] = Field(default_factory=list)
    tags: dict[str, list[str]] = Field(default_factory=dict)


class SesNotification(_Model):
    """A bounce or complaint, as published by a configuration set (`eventType`) or an identity
    notification (`notificationType`)."""

    event_type: str = Field(validation_alias=AliasChoices("eventType", "notificationType"))
    mail: _SesMail
    bounce: _SesBounce | None = None
    complaint: _SesComplaint | None = None

    @field_validator("event_type")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return value.capitalize()

    def tag(self, name: str) -> str | None:
        values = self.mail.tags.get(name) or []
        return values[0] if values else None

    def affected_recipients(self) -> list[str]:
        if self.bounce is not None:
            return [r.email_address for r in self.bounce.bounced_recipients]
        if self.complaint is not None:
            return [r.email_address for r in self.complaint.complained_recipients]
        return []

    @property
    def stops_sending(self) -> bool:
        """A permanent bounce or any complaint: mailing that address again would be wrong."""
        if self.event_type == "Complaint":
            return True
        return (
            self.event_type == "Bounce"
            and self.bounce is not None
            and (self.bounce.bounce_type == "Permanent")
        )


def model_values(values: dict[str, Any]) -> dict[str, Any]:
    """Drop None values (DynamoDB items do not store nulls)."""
    return {k: v for k, v in values.items() if v is not None}
