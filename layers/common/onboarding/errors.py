"""Typed domain errors, every one the service raises on purpose, and what each means to a caller.

Each error knows its HTTP status; the surfaces (the JSON API in `onboarding.api`, the connect page in
`functions/auth_callback`) map by type, never by message text. `error_code` reads a boto3 error's code.
"""

from __future__ import annotations

from http import HTTPStatus

from botocore.exceptions import ClientError


def error_code(error: ClientError) -> str:
    """The AWS error code of a boto3 error (`ConditionalCheckFailedException`, ...), or ""."""
    return str(error.response.get("Error", {}).get("Code", ""))


class DomainError(Exception):
    """Base of every error the service raises on purpose. `code` is stable and machine-readable."""

    code = "error"
    status = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str, *, details: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


# -- agents (the dashboard API) ----------------------------------------------------------------
class AgentNotFoundError(DomainError):
    code = "agent_not_found"
    status = HTTPStatus.NOT_FOUND


class DuplicateAgentError(DomainError):
    code = "duplicate_agent"
    status = HTTPStatus.CONFLICT


class IllegalTransitionError(DomainError):
    code = "illegal_transition"
    status = HTTPStatus.CONFLICT


class ConcurrentModificationError(DomainError):
    """The agent changed between read and write (optimistic locking by `version`)."""

    code = "concurrent_modification"
    status = HTTPStatus.CONFLICT


class InvalidPageTokenError(DomainError):
    code = "invalid_next_token"
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class MissingTenantError(DomainError):
    """The verified token carries no usable tenant claim."""

    code = "missing_tenant"
    status = HTTPStatus.FORBIDDEN


class InviteBouncedError(DomainError):
    """A resend was asked for an agent whose address bounced (or complained): sending again won't help."""

    code = "invite_bounced"
    status = HTTPStatus.CONFLICT


# -- invite links (the connect page) -------------------------------------------------------------
class InviteError(DomainError):
    """Base of the errors a visitor of an invite link can meet. None of them reveals another tenant.

    `page` names the link-problem page the connect page shows for it."""

    status = HTTPStatus.GONE
    page = "link_invalid"


class InviteNotFoundError(InviteError):
    code = "invite_not_found"
    status = HTTPStatus.NOT_FOUND
    page = "link_not_found"


class InviteExpiredError(InviteError):
    code = "invite_expired"
    page = "link_expired"


class InviteRevokedError(InviteError):
    """A newer invite replaced this one, or the agent was removed."""

    code = "invite_revoked"
    page = "link_revoked"


class InviteUsedError(InviteError):
    code = "invite_used"
    page = "link_used"


class InviteLockedError(InviteError):
    """Too many wrong passwords were tried with this invite; the dashboard must resend it."""

    code = "invite_locked"
    page = "link_locked"


# -- the connect page's forms ----------------------------------------------------------------------
class FormError(DomainError):
    """The owner typed something we cannot use: the page shows the message beside the form."""

    code = "invalid_form"
    status = HTTPStatus.BAD_REQUEST


class WrongMailboxError(FormError):
    code = "wrong_mailbox"


class NotNowError(DomainError):
    """The agent is not in a state where this form applies (e.g. already checking): show the status."""

    code = "not_now"
    status = HTTPStatus.CONFLICT


class CsrfError(DomainError):
    """A form post that did not come from our own page (or came too late): nothing is changed."""

    code = "csrf"
    status = HTTPStatus.FORBIDDEN


# -- sending invites ---------------------------------------------------------------------------
class InviteDeliveryFailedError(DomainError):
    """The invite email could not be sent and will not be retried (the agent is `invite_failed`)."""

    code = "invite_delivery_failed"


class EmailRejectedError(DomainError):
    """SES refused the message for good (bad address, unverified sender...): retrying will not help."""

    code = "email_rejected"


class EmailNotSentError(DomainError):
    """SES could not take the message now (throttled after backoff, quota, outage): retry later."""

    code = "email_not_sent"


# -- the verification workflow ---------------------------------------------------------------------
class CredentialNotFoundError(DomainError):
    """No password is stored for the agent (removed meanwhile, or never stored)."""

    code = "credential_not_found"
    status = HTTPStatus.NOT_FOUND
