"""What a failed health check means, in words: for the owner (the reconnect email and the connect page's
reconnect mode) and for the dashboard (`AgentHealth.problem`).

A check's problem is a stable code (`HealthState.check_problem`): an Exchange diagnosis
(`onboarding.exchange.diagnoses.Diagnosis`) or a Microsoft 365 reason (`m365_*`). Codes this module does not
know still get words: a general sentence of their kind (Microsoft's or the server's), never the code itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ProblemKind(StrEnum):
    REFUSED = "refused"  # the stored password (or the Microsoft sign-in) is no longer accepted
    LOCKED = "locked"  # the account is locked or its password expired: sign in once, or ask IT
    UNREACHABLE = "unreachable"  # the server (or Microsoft) could not be reached: nothing to re-enter
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Problem:
    """`what` completes "your mailbox stopped connecting on 3 March: ..."; `for_it`, when set, is what the
    owner can forward to the person who runs their email."""

    code: str | None
    kind: ProblemKind
    what: str
    for_it: str | None = None

    @property
    def sentence(self) -> str:
        """The problem as a sentence of its own (the dashboard's words)."""
        return self.what[:1].upper() + self.what[1:] + "."


_EXCHANGE: dict[str, tuple[ProblemKind, str, str | None]] = {
    "auth_failed": (ProblemKind.REFUSED, "the server no longer accepts the password", None),
    "password_expired": (
        ProblemKind.LOCKED,
        "the password has expired",
        None,
    ),
    "account_locked": (
        ProblemKind.LOCKED,
        "the server says the account is locked or its password has expired",
        "The Exchange account of {email} is locked (or its password has expired): please unlock it.",
    ),
    "access_denied": (
        ProblemKind.REFUSED,
        "the server no longer lets this login open the mailbox",
        "The login of {email} may no longer open its mailbox through Exchange Web Services (EWS): please "
        "check that EWS access is allowed for this mailbox.",
    ),
    "mailbox_not_found": (
        ProblemKind.REFUSED,
        "the server no longer knows this mailbox",
        "The Exchange server no longer finds the mailbox {email}: was it moved or renamed?",
    ),
    "modern_auth_required": (
        ProblemKind.REFUSED,
        "the mailbox has moved to Microsoft 365, which does not accept a password here",
        None,
    ),
    "unreachable": (
        ProblemKind.UNREACHABLE,
        "the server could not be reached",
        "Our service cannot reach the Exchange server of {email} from the internet: please check that it "
        "is reachable (not only over VPN).",
    ),
    "timeout": (
        ProblemKind.UNREACHABLE,
        "the server did not answer in time",
        "The Exchange server of {email} does not answer from the internet in time: please check it.",
    ),
    "server_busy": (ProblemKind.UNREACHABLE, "the server has been too busy to answer", None),
    "tls_error": (
        ProblemKind.UNREACHABLE,
        "the server's security certificate is no longer valid for its name",
        "The certificate of the Exchange server of {email} is not valid for its name (expired or replaced): "
        "please renew it.",
    ),
    "blocked_address": (
        ProblemKind.UNREACHABLE,
        "the server's name now points to a private network address",
        "The Exchange server's name of {email} resolves to a private address: it must be reachable from the "
        "internet.",
    ),
}

_M365: dict[str, tuple[ProblemKind, str, str | None]] = {
    "m365_account_disabled": (
        ProblemKind.REFUSED,
        "Microsoft says the account is disabled",
        "The Microsoft 365 account {email} is disabled: please enable it if it should stay monitored.",
    ),
    "m365_account_locked": (
        ProblemKind.REFUSED,
        "Microsoft says the account is locked",
        "The Microsoft 365 account {email} is locked: please unlock it.",
    ),
    "m365_conditional_access_blocked": (
        ProblemKind.REFUSED,
        "a Conditional Access policy of your organisation now blocks the sign-in",
        "A Conditional Access policy blocks our app's sign-in for {email}: please allow it.",
    ),
    "m365_consent_declined": (
        ProblemKind.REFUSED,
        "the permission to read the mailbox was withdrawn",
        None,
    ),
    "m365_admin_consent_required": (
        ProblemKind.REFUSED,
        "your organisation now requires an administrator to approve the app",
        "Our app needs an administrator's approval to read {email}: please approve it.",
    ),
    "m365_tenant_disabled": (
        ProblemKind.REFUSED,
        "Microsoft says your organisation's account is disabled",
        None,
    ),
    "m365_access_denied": (
        ProblemKind.REFUSED,
        "Microsoft no longer lets the app read the mailbox",
        "Our app may no longer read the mailbox {email}: please check its permissions.",
    ),
    "m365_no_mailbox": (ProblemKind.REFUSED, "Microsoft no longer finds a mailbox for this account", None),
    "m365_unavailable": (ProblemKind.UNREACHABLE, "Microsoft's service could not be reached", None),
    "m365_timeout": (ProblemKind.UNREACHABLE, "Microsoft did not answer in time", None),
    "m365_throttled": (ProblemKind.UNREACHABLE, "Microsoft has been asking us to slow down", None),
}
# Every other Microsoft 365 reason (token rejected, revoked or expired, sign-in expired...) means the sign-in
# the mailbox was connected with is no longer accepted.
_M365_REFUSED = "Microsoft no longer accepts the sign-in"


def problem_for(code: str | None, *, email: str = "") -> Problem:
    """The words of a check's problem code (None or an unknown code: general words of its kind)."""
    known = _EXCHANGE.get(code or "") or _M365.get(code or "")
    if known is not None:
        kind, what, for_it = known
        return Problem(code, kind, what, for_it.format(email=email) if for_it else None)
    if code and code.startswith("m365_"):
        return Problem(code, ProblemKind.REFUSED, _M365_REFUSED)
    return Problem(code, ProblemKind.UNKNOWN, "the mailbox stopped answering our checks")
