"""The answer Microsoft sends after an administrator used the admin-consent link we gave the owner to forward
(Microsoft identity platform: "Request the permissions from a directory admin": `admin_consent`, `tenant`,
`state`, or `error` with `admin_consent=True` on a refusal).

Anyone can open our callback with `?admin_consent=True`: the page reports an approval only when the answer
carries the signed `state` of a link we issued. Light on purpose (no msal): the outcome pages that show the
link import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from onboarding.connect.pages import check_csrf_nonce, csrf_nonce
from onboarding.core.errors import CsrfError
from onboarding.core.observability import logger

# The link is forwarded to IT, who may take days to use it.
MAX_AGE_SECONDS = 30 * 24 * 3600
_SCOPE = "admin-consent"


def new_state(key: bytes) -> str:
    """The `state` of an admin-consent link we issue: signed, so its answer can be told from a forged one."""
    return csrf_nonce(key, _SCOPE)


@dataclass(frozen=True)
class AdminConsent:
    granted: bool  # Microsoft said so, in answer to a link we issued
    tenant: str | None
    verified: bool = True  # False: no state of ours came back; nothing can be said about an approval


def answer(params: Mapping[str, str], key: bytes) -> AdminConsent | None:
    """The admin-consent answer in these callback parameters, or None when they are not one."""
    if "admin_consent" not in params:
        return None
    try:
        check_csrf_nonce(key, _SCOPE, params.get("state"), max_age=MAX_AGE_SECONDS)
    except CsrfError:
        logger.warning("Admin-consent answer without a state we issued")
        return AdminConsent(granted=False, tenant=None, verified=False)
    granted = params.get("admin_consent", "").lower() == "true" and "error" not in params
    return AdminConsent(granted=granted, tenant=params.get("tenant"))
