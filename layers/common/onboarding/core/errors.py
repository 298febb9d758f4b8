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
    """Base of every error the service raises on purpose. `code` is stable and machine-readable.

    Subclasses name theirs in the class line: `class XError(DomainError, code="x", status=...)`."""

    code = "error"
    status = HTTPStatus.BAD_REQUEST

    def __init_subclass__(
        cls, *, code: str | None = None, status: HTTPStatus | None = None, **kwargs: object
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if status is not None:
            cls.status = status

    def __init__(self, message: str, *, details: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


# -- agents (the dashboard API) ----------------------------------------------------------------
class AgentNotFoundError(DomainError, code="agent_not_found", status=HTTPStatus.NOT_FOUND): ...


class DuplicateAgentError(DomainError, code="duplicate_agent", status=HTTPStatus.CONFLICT): ...


class IllegalTransitionError(DomainError, code="illegal_transition", status=HTTPStatus.CONFLICT): ...


class ConcurrentModificationError(DomainError, code="concurrent_modification", status=HTTPStatus.CONFLICT):
    """The agent changed between read and write (optimistic locking by `version`)."""


class InvalidPageTokenError(
    DomainError, code="invalid_next_token", status=HTTPStatus.UNPROCESSABLE_ENTITY
): ...


class MissingTenantError(DomainError, code="missing_tenant", status=HTTPStatus.FORBIDDEN):
    """The verified token carries no usable tenant claim."""


class ReconnectTooSoonError(DomainError, code="reconnect_too_soon", status=HTTPStatus.TOO_MANY_REQUESTS):
    """A reconnect email was asked for too recently; `retry_after` says in how many seconds one may be."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InviteBouncedError(DomainError, code="invite_bounced", status=HTTPStatus.CONFLICT):
    """A resend was asked for an agent whose address bounced (or complained): sending again won't help."""


# -- invite links (the connect page) -------------------------------------------------------------
class InviteError(DomainError, status=HTTPStatus.GONE):
    """Base of the errors a visitor of an invite link can meet. None of them reveals another tenant.

    `page` names the link-problem page the connect page shows for it."""

    page = "link_invalid"

    def __init_subclass__(cls, *, page: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)  # type: ignore[arg-type]
        if page is not None:
            cls.page = page


class InviteNotFoundError(
    InviteError, code="invite_not_found", page="link_not_found", status=HTTPStatus.NOT_FOUND
): ...


class InviteExpiredError(InviteError, code="invite_expired", page="link_expired"): ...


class InviteRevokedError(InviteError, code="invite_revoked", page="link_revoked"):
    """A newer invite replaced this one, or the agent was removed."""


class InviteUsedError(InviteError, code="invite_used", page="link_used"): ...


class InviteLockedError(InviteError, code="invite_locked", page="link_locked"):
    """Too many wrong passwords were tried with this invite; the dashboard must resend it."""


# -- the connect page's forms ----------------------------------------------------------------------
class FormError(DomainError, code="invalid_form", status=HTTPStatus.BAD_REQUEST):
    """The owner typed something we cannot use: the page shows the message beside the form."""


class WrongMailboxError(FormError, code="wrong_mailbox"): ...


class UseMicrosoftSignInError(FormError, code="use_microsoft_sign_in"):
    """A password was posted for a Microsoft 365 mailbox: it is dropped unstored; the page offers
    "Sign in with Microsoft" instead."""


class NotNowError(DomainError, code="not_now", status=HTTPStatus.CONFLICT):
    """The agent is not in a state where this form applies (e.g. already checking): show the status."""


class CsrfError(DomainError, code="csrf", status=HTTPStatus.FORBIDDEN):
    """A form post that did not come from our own page (or came too late): nothing is changed."""


# -- sending invites ---------------------------------------------------------------------------
class InviteDeliveryFailedError(DomainError, code="invite_delivery_failed"):
    """The invite email could not be sent and will not be retried (the agent is `invite_failed`)."""


class EmailRejectedError(DomainError, code="email_rejected"):
    """SES refused the message for good (bad address, unverified sender...): retrying will not help."""


class EmailNotSentError(DomainError, code="email_not_sent"):
    """SES could not take the message now (throttled after backoff, quota, outage): retry later."""


# -- the verification workflow ---------------------------------------------------------------------
class CredentialNotFoundError(DomainError, code="credential_not_found", status=HTTPStatus.NOT_FOUND):
    """No password is stored for the agent (removed meanwhile, or never stored)."""


class CredentialChangedError(CredentialNotFoundError, code="credential_changed"):
    """The stored secret is not the one read any more: another was sealed meanwhile (the owner reconnected)
    or it was removed. The newer state stands; the reader's secret is no longer the agent's."""


# -- health checks -------------------------------------------------------------------------------
class TooSoonError(DomainError, code="too_soon", status=HTTPStatus.TOO_MANY_REQUESTS):
    """Asked again too soon (a rate limit per agent): `retry_after` seconds until it may be asked again."""

    def __init__(
        self, message: str, *, retry_after: int, details: list[dict[str, object]] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = max(1, retry_after)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
