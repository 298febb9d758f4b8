"""Verdicts of the Exchange connection and the plain words shown for each.

Imported by the connect page: this module imports neither exchangelib nor requests.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Diagnosis(StrEnum):
    """Stable verdict codes (stored, shown, counted: never rename a value)."""

    AUTH_FAILED = "auth_failed"
    AUTODISCOVER_FAILED = "autodiscover_failed"
    MAILBOX_NOT_FOUND = "mailbox_not_found"
    ACCESS_DENIED = "access_denied"
    ACCOUNT_LOCKED = "account_locked"
    MODERN_AUTH_REQUIRED = "modern_auth_required"
    UNREACHABLE = "unreachable"
    TLS_ERROR = "tls_error"
    TIMEOUT = "timeout"
    SERVER_BUSY = "server_busy"  # the server asked us to wait (throttling, 503) longer than the time budget
    BLOCKED_ADDRESS = "blocked_address"
    CONFIRM_SERVER = (
        "confirm_server"  # the settings come from a server in another domain: ask the owner first
    )


_MESSAGES: dict[Diagnosis, str] = {
    Diagnosis.AUTH_FAILED: (
        "The email server did not accept this username and password. Check them and try again. "
        "If your account uses two-step verification, create an app password and use it here."
    ),
    Diagnosis.AUTODISCOVER_FAILED: (
        "We could not find your email server's settings automatically. Open the advanced settings and enter "
        "the server name and username yourself; the person who runs your company's email can tell you them."
    ),
    Diagnosis.MAILBOX_NOT_FOUND: (
        "The email server does not know this email address. Check the address for typing mistakes."
    ),
    Diagnosis.ACCESS_DENIED: (
        "You signed in, but this login may not open this mailbox from an app like ours. Sign in with the login "
        "that belongs to this mailbox, or ask the person who runs your company's email to give it access "
        "(access through Exchange Web Services may be turned off for this mailbox)."
    ),
    Diagnosis.ACCOUNT_LOCKED: (
        "Your email account is locked or its password has expired. Sign in to your email once to unlock it "
        "or change the password, or ask the person who runs your company's email for help, then try again."
    ),
    Diagnosis.MODERN_AUTH_REQUIRED: (
        "This mailbox is hosted by Microsoft 365 (Exchange Online), which no longer allows signing in with a "
        "password here. Connect it with the Microsoft 365 sign-in option instead."
    ),
    Diagnosis.UNREACHABLE: (
        "We could not reach your email server. Check the server name. If you normally need a VPN to "
        "reach your email, ask the person who runs your company's email to make the server reachable "
        "from the internet."
    ),
    Diagnosis.TLS_ERROR: (
        "Your email server's security certificate is not valid for this server name, so we did not send "
        "your password. Check the server name, or ask the person who runs your company's email to fix "
        "the certificate."
    ),
    Diagnosis.TIMEOUT: (
        "Your email server took too long to answer. Try again in a few minutes; if it keeps happening, check "
        "the server name or ask the person who runs your company's email."
    ),
    Diagnosis.SERVER_BUSY: (
        "Your email server is busy right now and asked us to come back later. Nothing is wrong with your "
        "details: try again in a few minutes."
    ),
    Diagnosis.BLOCKED_ADDRESS: (
        "This server address points to a private or internal network, which we cannot connect to. Enter the "
        "public name of your email server."
    ),
    Diagnosis.CONFIRM_SERVER: (
        "Your email domain sends us to a server in another domain to find your settings, so we have not sent "
        "your password there. If that server belongs to your email provider, enter its name as the server in "
        "the advanced settings; the person who runs your company's email can tell you which server to use."
    ),
}


class ExchangeFailure(Exception):
    """A verdict other than success. ``detail`` is safe for logs: it never contains the password."""

    def __init__(
        self, code: Diagnosis, detail: str = "", *, host: str | None = None, hint: str | None = None
    ) -> None:
        self.code = Diagnosis(code)
        self.detail = detail
        self.host = host  # CONFIRM_SERVER: the server that asks for the password
        self.hint = hint  # AUTH_FAILED: a login form to suggest (e.g. "CONTOSO\\alice")
        super().__init__(code, detail)

    def __str__(self) -> str:
        return f"{self.code.value}: {self.detail}" if self.detail else self.code.value

    def __repr__(self) -> str:
        return f"ExchangeFailure(code={self.code.value!r}, detail={self.detail!r})"


EXAMPLE_DOMAIN = "DOMAIN"  # the login hint's domain when the server did not name its own

_EMAIL_LOGIN_HINT = (
    " You signed in with your email address: many company servers want the Windows sign-in instead, "
    "written DOMAIN\\username (for example {example}). Open the advanced settings and enter it as the username."
)
_NAMED_DOMAIN_HINT = (
    " You signed in with your email address, and your email server asked for a Windows sign-in in its "
    "{domain} domain. Try signing in as {login}: open the advanced settings and enter {login} as the username."
)


def login_hint_text(hint: str | None) -> str:
    """The sentences that suggest ``hint`` (``DOMAIN\\user``) as the login, or "" without a hint. When the
    server named its Windows (NetBIOS) domain, the owner is told the very login to try."""
    if not hint:
        return ""
    domain, sep, _ = hint.partition("\\")
    if sep and domain and domain != EXAMPLE_DOMAIN:
        return _NAMED_DOMAIN_HINT.format(domain=domain, login=hint)
    return _EMAIL_LOGIN_HINT.format(example=hint)


def message_for(code: Diagnosis | str, *, hint: str | None = None) -> str:
    """Plain words a mailbox owner can act on; ``hint`` (a login form to suggest) extends AUTH_FAILED."""
    diagnosis = Diagnosis(code)
    text = _MESSAGES[diagnosis]
    if diagnosis is Diagnosis.AUTH_FAILED:
        text += login_hint_text(hint)
    return text


def verdict_text(failure: ExchangeFailure) -> str:
    """The verdict line of the IT admin's trace (the login to suggest included)."""
    text = f"{failure.code.value}: {failure.detail}"
    return f"{text}; suggested login {failure.hint}" if failure.hint else text


def without_secret(failure: ExchangeFailure, secret: str) -> ExchangeFailure:
    """Defence in depth: a password typed into another field (say, the server) must not reach ``detail``."""
    if secret and secret.lower() in failure.detail.lower():
        return ExchangeFailure(
            failure.code,
            re.sub(re.escape(secret), "***", failure.detail, flags=re.IGNORECASE),
            host=failure.host,
            hint=failure.hint,
        )
    return failure
