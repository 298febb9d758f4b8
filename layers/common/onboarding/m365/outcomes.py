"""What can happen on the Microsoft 365 path, as stable reason codes with plain-words messages.

Importable without msal or requests (the connect page imports it on every request). Microsoft's AADSTS
numbers are mapped here, once; everything else speaks in `M365Reason`. Microsoft documents the codes at
https://learn.microsoft.com/entra/identity-platform/reference-error-codes and warns that texts change,
so only the numbers (`error_codes`, or the `AADSTSnnnn:` prefix of `error_description`) are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class M365Reason(StrEnum):
    CONSENT_DECLINED = "m365_consent_declined"
    ADMIN_CONSENT_REQUIRED = "m365_admin_consent_required"
    WRONG_ACCOUNT = "m365_wrong_account"
    NO_MAILBOX = "m365_no_mailbox"
    CONDITIONAL_ACCESS = "m365_conditional_access_blocked"
    ACCOUNT_DISABLED = "m365_account_disabled"
    TENANT_DISABLED = "m365_tenant_disabled"
    ACCOUNT_LOCKED = "m365_account_locked"
    PERSONAL_ACCOUNT = "m365_personal_account"
    ACCESS_DENIED = "m365_access_denied"
    TOKEN_REJECTED = "m365_token_rejected"  # noqa: S105  (a reason code)
    THROTTLED = "m365_throttled"
    UNAVAILABLE = "m365_unavailable"
    TIMEOUT = "m365_timeout"
    SIGN_IN_EXPIRED = "m365_sign_in_expired"
    SIGN_IN_INVALID = "m365_sign_in_invalid"
    SIGN_IN_FAILED = "m365_sign_in_failed"
    NOT_CONFIGURED = "m365_not_configured"


@dataclass(frozen=True)
class Outcome:
    title: str
    message: str  # what happened, in plain words ({signed_in} and {invited} are filled in)
    next_step: str  # what the owner can do now
    for_it: str | None = None  # what to forward to the IT department, when only they can fix it
    retry: bool = True  # offer "Sign in with Microsoft" again
    offer_exchange_form: bool = False  # the mailbox may be on an on-premises Exchange server
    admin_consent_link: bool = False


R = M365Reason
OUTCOMES: dict[M365Reason, Outcome] = {
    R.CONSENT_DECLINED: Outcome(
        "You did not allow access",
        "You cancelled on Microsoft's page that asks to allow access to your mailbox, so nothing was "
        "connected.",
        "The dashboard only reads when messages arrive and when they are answered (no message contents). "
        "If you want to connect your mailbox, sign in again and choose Accept.",
    ),
    R.ADMIN_CONSENT_REQUIRED: Outcome(
        "Your IT department needs to approve this app",
        "Your organisation lets only its administrators allow apps to read mailboxes.",
        "Send the approval link below to your IT department. Once they have approved, come back to this "
        "page and sign in again.",
        for_it="Please approve the response-time dashboard app for our Microsoft 365 organisation "
        "(read-only: basic mail metadata and the user's profile).",
        admin_consent_link=True,
    ),
    R.WRONG_ACCOUNT: Outcome(
        "You signed in with another account",
        "You signed in as {signed_in}; this invite is for {invited}.",
        'Sign in again and choose {invited} on Microsoft\'s page (use "Use another account" if it is not '
        "listed).",
    ),
    R.NO_MAILBOX: Outcome(
        "No Microsoft 365 mailbox for this account",
        "You signed in, but this account has no mailbox in Exchange Online that apps may read (or reading "
        "it is turned off for apps).",
        "If your mailbox is on your organisation's own Exchange server, connect it with the Microsoft "
        "Exchange (on-premises) form instead. Otherwise ask your IT department.",
        for_it="The account has no Exchange Online mailbox, or REST access to it is not enabled "
        "(Microsoft Graph answered MailboxNotEnabledForRESTAPI / ResourceNotFound for /me/mailFolders).",
        offer_exchange_form=True,
    ),
    R.CONDITIONAL_ACCESS: Outcome(
        "Your organisation blocked this sign-in",
        "A Conditional Access policy of your organisation did not allow this sign-in (for example, only "
        "from company devices or locations).",
        "Try again from a device your organisation manages, or ask your IT department.",
        for_it="A Conditional Access policy blocked the sign-in of the response-time dashboard app "
        "(AADSTS53003 or related). Please allow the app or tell the user how to sign in.",
    ),
    R.ACCOUNT_DISABLED: Outcome(
        "Your account is disabled",
        "Microsoft says this account is disabled, so it cannot sign in.",
        "Ask your IT department to enable the account, then sign in again.",
        for_it="Microsoft Entra ID reports the user account as disabled (AADSTS50057).",
    ),
    R.TENANT_DISABLED: Outcome(
        "Your organisation's Microsoft 365 is not available",
        "Microsoft says your organisation's directory is disabled or not found.",
        "Ask your IT department; once the organisation is active again, sign in again.",
        for_it="Microsoft Entra ID reports the organisation's tenant as disabled or not found.",
    ),
    R.ACCOUNT_LOCKED: Outcome(
        "Your account is locked",
        "Microsoft locked this account for now, usually after too many wrong passwords.",
        "Wait a while or ask your IT department to unlock it, then sign in again.",
    ),
    R.PERSONAL_ACCOUNT: Outcome(
        "That is a personal Microsoft account",
        "This invite is for a work or school mailbox; a personal Microsoft account (Outlook.com, "
        "Hotmail) cannot be connected.",
        "Sign in again with your work or school account, {invited}.",
    ),
    R.ACCESS_DENIED: Outcome(
        "Your mailbox may not be read by apps",
        "You signed in, but your organisation does not let this app read your mailbox.",
        "Ask your IT department to allow it, then sign in again.",
        for_it="Microsoft Graph refused to read the mailbox (403 ErrorAccessDenied): an application "
        "access policy or mailbox permissions may block the app.",
    ),
    R.TOKEN_REJECTED: Outcome(
        "Microsoft did not accept the sign-in",
        "Microsoft Graph did not accept the access granted by your sign-in.",
        "Sign in again. If it keeps happening, ask your IT department.",
    ),
    R.THROTTLED: Outcome(
        "Microsoft is busy",
        "Microsoft asked us to slow down while we were checking your mailbox.",
        "Wait a minute, then sign in again.",
    ),
    R.UNAVAILABLE: Outcome(
        "Microsoft 365 did not answer properly",
        "Microsoft's service had a problem while we were checking your mailbox.",
        "Try again in a few minutes.",
    ),
    R.TIMEOUT: Outcome(
        "Microsoft did not answer in time",
        "Microsoft's sign-in service took too long to answer.",
        "Try again in a few minutes.",
    ),
    R.SIGN_IN_EXPIRED: Outcome(
        "The sign-in took too long",
        "The sign-in was started too long ago, or it was already used.",
        "Start again from this page.",
    ),
    R.SIGN_IN_INVALID: Outcome(
        "This sign-in cannot be used here",
        "This answer from Microsoft does not belong to a sign-in started in this browser for this invite.",
        "Open the link from your invite email again and sign in from there.",
    ),
    R.SIGN_IN_FAILED: Outcome(
        "The sign-in did not work",
        "Microsoft ended the sign-in with an error.",
        "Sign in again. If it keeps happening, ask your IT department.",
    ),
    R.NOT_CONFIGURED: Outcome(
        "Microsoft 365 sign-in is not available",
        "Sign-in with Microsoft is not set up for this service yet.",
        "Ask the person who invited you.",
        retry=False,
    ),
}

# AADSTS numbers -> reasons. Anything else is SIGN_IN_FAILED (with the number logged, never the text).
_AADSTS: dict[int, M365Reason] = {
    65004: R.CONSENT_DECLINED,  # UserDeclinedConsent
    90094: R.ADMIN_CONSENT_REQUIRED,  # AdminConsentRequired
    90095: R.ADMIN_CONSENT_REQUIRED,  # AdminConsentRequiredRequestAccess (admin consent workflow)
    90008: R.ADMIN_CONSENT_REQUIRED,  # TokenForItselfRequiresGrant
    65001: R.ADMIN_CONSENT_REQUIRED,  # DelegationDoesNotExist (consent_required)
    53000: R.CONDITIONAL_ACCESS,  # DeviceNotCompliant
    53001: R.CONDITIONAL_ACCESS,  # DeviceNotDomainJoined
    53002: R.CONDITIONAL_ACCESS,  # ApplicationUsedIsNotAnApprovedApp
    53003: R.CONDITIONAL_ACCESS,  # BlockedByConditionalAccess
    53004: R.CONDITIONAL_ACCESS,  # ProofUpBlockedDueToRisk
    530003: R.CONDITIONAL_ACCESS,  # device must be managed
    50057: R.ACCOUNT_DISABLED,  # UserDisabled
    50053: R.ACCOUNT_LOCKED,  # IdsLocked
    90002: R.TENANT_DISABLED,  # InvalidTenantName (not found)
    5000225: R.TENANT_DISABLED,  # tenant blocked due to inactivity
    50020: R.PERSONAL_ACCOUNT,  # UserUnauthorized (personal account or other tenant)
    54005: R.SIGN_IN_EXPIRED,  # authorization code already redeemed
    70008: R.SIGN_IN_EXPIRED,  # code or refresh token expired
    50173: R.TOKEN_REJECTED,  # grant revoked (password changed)
    50132: R.TOKEN_REJECTED,  # session revoked (password changed or expired, sessions revoked by an admin)
    50133: R.TOKEN_REJECTED,  # session invalid after a password change
    700082: R.TOKEN_REJECTED,  # refresh token expired due to inactivity
}
_AADSTS_PREFIX = re.compile(r"AADSTS(\d{4,8})")


def aadsts_codes(error_codes: object, description: object) -> list[int]:
    """The AADSTS numbers of a Microsoft error: `error_codes` if given, else the description's prefix."""
    codes = (
        [int(c) for c in error_codes if isinstance(c, int | str) and str(c).isdigit()]
        if isinstance(error_codes, list)
        else []
    )
    if not codes and isinstance(description, str):
        codes = [int(m) for m in _AADSTS_PREFIX.findall(description)[:1]]
    return codes


def reason_for_identity_error(error: str | None, error_codes: object, description: object) -> M365Reason:
    """The reason for an OAuth error from the authorize redirect or the token endpoint."""
    for code in aadsts_codes(error_codes, description):
        if code in _AADSTS:
            return _AADSTS[code]
    if error == "consent_required":
        return R.ADMIN_CONSENT_REQUIRED
    return R.SIGN_IN_FAILED


def outcome_for(reason: str) -> Outcome | None:
    try:
        return OUTCOMES[M365Reason(reason)]
    except ValueError:
        return None


def message_for(reason: str, *, signed_in: str | None = None, invited: str = "") -> str | None:
    """One paragraph for the status page: what happened and what to do."""
    outcome = outcome_for(reason)
    if outcome is None:
        return None
    values = {"signed_in": signed_in or "another account", "invited": invited or "the invited mailbox"}
    return f"{outcome.message.format(**values)} {outcome.next_step.format(**values)}"


def is_m365_reason(reason: str | None) -> bool:
    return bool(reason) and str(reason).startswith("m365_")
