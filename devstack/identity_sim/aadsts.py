"""The AADSTS errors the simulator plays, with the OAuth ``error`` Microsoft pairs them with.

Texts follow Microsoft Entra's error-code reference (learn.microsoft.com/entra/identity-platform/
reference-error-codes) and what the service puts in ``error_description``; the description always starts
with ``AADSTS<code>: `` and ends with the trace/correlation lines, as Microsoft's do.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Aadsts:
    code: int
    error: str  # the OAuth 2.0 ``error`` value
    message: str  # may hold {placeholders}
    status: int = 400  # HTTP status at the token endpoint
    suberror: str | None = None

    def describe(self, **values: str) -> str:
        return f"AADSTS{self.code}: {self.message.format(**values)}"


INVALID_TENANT = Aadsts(
    90002,
    "invalid_tenant",
    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the "
    "correct cloud. Check with your subscription administrator, this may happen if there are no active "
    "subscriptions for the tenant.",
)
UNKNOWN_CLIENT = Aadsts(
    700016,
    "unauthorized_client",
    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the "
    "application has not been installed by the administrator of the tenant or consented to by any user in the "
    "tenant. You may have sent your authentication request to the wrong tenant.",
)
REDIRECT_MISMATCH = Aadsts(
    50011,
    "invalid_request",
    "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for "
    "the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your "
    "application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about "
    "how to fix this.",
)
MISSING_PARAMETER = Aadsts(
    900144, "invalid_request", "The request body must contain the following parameter: '{name}'."
)
PKCE_REQUIRED = Aadsts(
    9002325,
    "invalid_request",
    "Proof Key for Code Exchange is required for cross-origin authorization code redemption.",
)
INVALID_CODE_CHALLENGE_METHOD = Aadsts(50149, "invalid_request", "Invalid Code_Challenge_method parameter.")
UNSUPPORTED_RESPONSE_TYPE = Aadsts(
    70005, "unsupported_response_type", "response_type '{response_type}' is not enabled for the application."
)
INVALID_SCOPE = Aadsts(
    70011,
    "invalid_scope",
    "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
)
UNSUPPORTED_GRANT = Aadsts(
    70003, "unsupported_grant_type", "The app requested an unsupported grant type '{grant_type}'."
)
WRONG_PASSWORD = Aadsts(
    50126, "invalid_grant", "Error validating credentials due to invalid username or password."
)
UNKNOWN_USER = Aadsts(
    50034,
    "invalid_grant",
    "The user account {{EmailHidden}} does not exist in the {tenant} directory. To sign into this application, "
    "the account must be added to the directory.",
)
USER_DISABLED = Aadsts(50057, "access_denied", "The user account is disabled.")
TENANT_BLOCKED = Aadsts(
    5000225,
    "access_denied",
    "This tenant has been blocked due to inactivity. To learn more about tenant lifecycle policies, see "
    "https://aka.ms/TenantLifecycle",
)
CONDITIONAL_ACCESS = Aadsts(
    53003,
    "access_denied",
    "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
)
WRONG_TENANT = Aadsts(
    50020,
    "access_denied",
    "User account '{{EmailHidden}}' from identity provider 'https://sts.windows.net/{user_tenant}/' does not exist "
    "in tenant '{tenant}' and cannot access the application '{client_id}' in that tenant. The account needs to "
    "be added as an external user in the tenant first. Sign out and sign in again with a different Azure "
    "Active Directory user account.",
)
LOGIN_REQUIRED = Aadsts(
    50058, "login_required", "A silent sign-in request was sent but no user is signed in."
)
CONSENT_DECLINED = Aadsts(65004, "access_denied", "User declined to consent to access the app.")
ADMIN_APPROVAL_NEEDED = Aadsts(90094, "access_denied", "The grant requires admin permission.")
NOT_CONSENTED = Aadsts(
    65001,
    "invalid_grant",
    "The user or administrator has not consented to use the application with ID '{client_id}' named "
    "'{app_name}'. Send an interactive authorization request for this user and resource.",
    suberror="consent_required",
)
CODE_REDEEMED = Aadsts(
    54005,
    "invalid_grant",
    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing "
    "refresh token.",
)
CODE_EXPIRED = Aadsts(
    70008,
    "invalid_grant",
    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive "
    "authorization request for this user and resource.",
)
BAD_GRANT = Aadsts(9002313, "invalid_grant", "Invalid request. Request is malformed or invalid.")
CODE_VERIFIER_MISMATCH = Aadsts(
    501481,
    "invalid_grant",
    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
)
TOKEN_REDIRECT_MISMATCH = Aadsts(
    50011,
    "invalid_grant",
    "The reply address '{redirect_uri}' does not match the reply address '{expected}' provided when requesting "
    "Authorization code.",
)
CLIENT_MISMATCH = Aadsts(
    70000, "invalid_grant", "Provided grant is invalid or malformed: it was issued to another client."
)
MISSING_CLIENT_SECRET = Aadsts(
    7000218,
    "invalid_client",
    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    status=401,
)
WRONG_CLIENT_SECRET = Aadsts(
    7000215,
    "invalid_client",
    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, "
    "not the client secret ID, for a secret added to app '{client_id}'.",
    status=401,
)
REFRESH_TOKEN_INACTIVE = Aadsts(
    700082,
    "invalid_grant",
    "The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive for "
    "90.00:00:00.",
)
GRANT_REVOKED = Aadsts(
    50173,
    "invalid_grant",
    "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have "
    "changed or reset their password.",
)

# At the token endpoint (a refresh) the user's state comes back as ``invalid_grant``: the app must send the person
# through an interactive sign-in again (Microsoft Entra error-code reference: UserDisabled, IdsLocked).
USER_DISABLED_GRANT = Aadsts(50057, "invalid_grant", USER_DISABLED.message)
ACCOUNT_LOCKED = Aadsts(
    50053,
    "invalid_grant",
    "Your account is locked because you've tried to sign in too many times with an incorrect user ID or "
    "password.",
)
# OAuth 2.0's ``temporarily_unavailable`` (RFC 6749 section 4.1.2.1), with HTTP 503: "The server is temporarily
# too busy to handle the request. Retry the request." (Entra error-code reference); AADSTS90033, a transient
# directory outage.
TEMPORARILY_UNAVAILABLE = Aadsts(
    90033, "temporarily_unavailable", "A transient error has occurred. Please try again.", status=503
)


def body(err: Aadsts, **values: str) -> dict[str, Any]:
    """The JSON body Microsoft's token endpoint sends for ``err``."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    description = f"{err.describe(**values)} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {now}"
    out: dict[str, Any] = {
        "error": err.error,
        "error_description": description,
        "error_codes": [err.code],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={err.code}",
    }
    if err.suberror:
        out["suberror"] = err.suberror
    return out
