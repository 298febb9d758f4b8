"""Typed domain errors. Handlers map these to responses by type, never by message text."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the service raises on purpose. `code` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str, *, details: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class AgentNotFoundError(DomainError):
    code = "agent_not_found"


class DuplicateAgentError(DomainError):
    code = "duplicate_agent"


class IllegalTransitionError(DomainError):
    code = "illegal_transition"


class ConcurrentModificationError(DomainError):
    """The agent changed between read and write (optimistic locking by `version`)."""

    code = "concurrent_modification"


class InvalidPageTokenError(DomainError):
    code = "invalid_next_token"


class MissingTenantError(DomainError):
    """The verified token carries no usable tenant claim."""

    code = "missing_tenant"


# -- invites -----------------------------------------------------------------------------------
class InviteBouncedError(DomainError):
    """A resend was asked for an agent whose address bounced (or complained): sending again won't help."""

    code = "invite_bounced"


class InviteError(DomainError):
    """Base of the errors a visitor of an invite link can meet. None of them reveals another tenant."""


class InviteNotFoundError(InviteError):
    code = "invite_not_found"


class InviteExpiredError(InviteError):
    code = "invite_expired"


class InviteRevokedError(InviteError):
    """A newer invite replaced this one, or the agent was removed."""

    code = "invite_revoked"


class InviteUsedError(InviteError):
    code = "invite_used"


class InviteLockedError(InviteError):
    """Too many wrong passwords were tried with this invite; the dashboard must resend it."""

    code = "invite_locked"


class InviteDeliveryFailedError(DomainError):
    """The invite email could not be sent and will not be retried (the agent is `invite_failed`)."""

    code = "invite_delivery_failed"


class EmailRejectedError(DomainError):
    """SES refused the message for good (bad address, unverified sender...): retrying will not help."""

    code = "email_rejected"


class EmailNotSentError(DomainError):
    """SES could not take the message now (throttled after backoff, quota, outage): retry later."""

    code = "email_not_sent"


# The names the invites issue uses; the `...Error` classes above follow the house naming.
InviteNotFound = InviteNotFoundError
InviteExpired = InviteExpiredError
InviteRevoked = InviteRevokedError
InviteUsed = InviteUsedError
InviteLocked = InviteLockedError
