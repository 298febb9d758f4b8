"""Shapes of the invite flow: what a stream record asks for, the stored invite, SES notifications.

The invite attributes kept on the agent item itself are `onboarding.agents.models.InviteState`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, Json, field_validator

from onboarding.agents.models import CONTROL_CHARS, AgentId, Attr, TenantId


def clean_tenant_name(value: object) -> str | None:
    """The display name from a token claim, or None when it is missing or unusable in an email."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > 100 or CONTROL_CHARS.search(value):
        return None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True, defer_build=True)


class InviteRequested(_Model):
    """The new image of an agent stream record that asks for an invite (see FilterCriteria)."""

    tenant_id: TenantId = Field(alias="tenantId")
    agent_id: AgentId = Field(alias="agentId")
    invite_version: int = Field(default=1, ge=1, alias=Attr.INVITE_VERSION)


class LinkPurpose(StrEnum):
    """What a link is for: the first connection (an invite), or connecting again a mailbox that connected once
    (a reconnect email: the stored password or sign-in stopped working, or the password expires soon)."""

    INVITE = "invite"
    RECONNECT = "reconnect"
    PASSWORD_EXPIRY = "password_expiry"  # noqa: S105 (a purpose, not a password)


class Invite(_Model):
    """An issued link, stored under the SHA-256 of its token (never the token): an invite, or a reconnect link
    (the same machinery: single use, expiring, attempts counted; valid while its `reconnectVersion` is the
    agent's)."""

    token_hash: str = Field(alias="tokenHash", pattern=r"^[0-9a-f]{64}$")
    tenant_id: TenantId = Field(alias="tenantId")
    agent_id: AgentId = Field(alias="agentId")
    invite_version: int = Field(ge=1, alias="inviteVersion")
    purpose: LinkPurpose = LinkPurpose.INVITE
    reconnect_version: int | None = Field(default=None, ge=1, alias="reconnectVersion")
    created_at: datetime = Field(alias="createdAt")
    expires_at: datetime = Field(alias="expiresAt")
    failed_attempts: int = Field(default=0, ge=0, alias="failedAttempts")
    used_at: datetime | None = Field(default=None, alias="usedAt")


class DeliveryOutcome(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"  # stale or replayed record: nothing to do
    FAILED = "failed"  # given up (refused by SES, or too many failed sends): logged, nothing more to do


class ReconnectRequested(_Model):
    """The new image of an agent stream record on which a reconnect email became pending (see FilterCriteria):
    only a wake-up; the sender acts on the agent's current reconnect version."""

    tenant_id: TenantId = Field(alias="tenantId")
    agent_id: AgentId = Field(alias="agentId")
    reconnect_version: int = Field(ge=1, alias=Attr.RECONNECT_PENDING)


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


class _SnsMessage(_Model):
    message: Json[SesNotification] = Field(alias="Message")  # SNS carries SES's JSON as a string


class _SnsRecord(_Model):
    sns: _SnsMessage = Field(alias="Sns")


class SnsNotifications(_Model):
    """What SNS hands a subscribed Lambda function: one record per SES notification. (Powertools' SnsEnvelope
    does the same with its parser models, which cost 0.5x of a bare boto3 import at cold start.)"""

    records: list[_SnsRecord] = Field(alias="Records")

    @property
    def notifications(self) -> list[SesNotification]:
        return [record.sns.message for record in self.records]
