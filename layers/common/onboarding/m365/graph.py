"""The two Microsoft Graph reads that verify a Microsoft 365 mailbox, over plain HTTPS.

`GET /v1.0/me` must name the invited address (as `mail`, `userPrincipalName` or one of the SMTP
`proxyAddresses`); `GET /v1.0/me/mailFolders/inbox` proves the mailbox can be read and gives its size.
Each call has a timeout, the whole check a budget; a 429's `Retry-After` (and a 5xx, once) is honoured
while the budget allows (a 5xx only when it asks for a short wait). Graph's errors (`{"error": {"code", "message"}}`) become reason codes:
401 -> token rejected, 403 -> access denied, 404 MailboxNotEnabledForRESTAPI / ResourceNotFound ->
no mailbox, 429 -> throttled, 5xx -> unavailable, timeouts -> timeout.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from pydantic import SecretStr

from onboarding.core.observability import logger
from onboarding.m365.config import M365Config
from onboarding.m365.outcomes import M365Reason

MAX_5XX_WAIT = 2.0  # seconds
_ISSUER_TENANT = re.compile(r"/([0-9a-fA-F-]{36})/v2\.0/?$")
ME_SELECT = "id,displayName,mail,userPrincipalName,proxyAddresses"
INBOX_SELECT = "totalItemCount,unreadItemCount"
_NO_MAILBOX = frozenset(
    {"MailboxNotEnabledForRESTAPI", "ResourceNotFound", "MailboxNotFound", "ErrorItemNotFound"}
)


class GraphFailure(Exception):
    def __init__(self, reason: M365Reason, *, signed_in: str | None = None, detail: str = "") -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.signed_in = signed_in
        self.detail = detail


@dataclass(frozen=True)
class GraphMailbox:
    address: str  # the address Graph knows the mailbox by (mail, else userPrincipalName)
    user_id: str
    inbox_item_count: int


def addresses_of(me: dict[str, Any]) -> set[str]:
    """Every address that names this user: mail, UPN and the SMTP proxy addresses (any letter case)."""
    found = {str(me.get(key) or "").lower() for key in ("mail", "userPrincipalName")}
    for proxy in me.get("proxyAddresses") or []:
        kind, _, address = str(proxy).partition(":")
        if kind.lower() == "smtp" and address:
            found.add(address.lower())
    found.discard("")
    return found


class GraphClient:
    def __init__(self, config: M365Config, session: requests.Session | None = None) -> None:
        self.config = config
        self.session = session or requests.Session()
        self.session.trust_env = False

    def tenant_of_domain(self, domain: str) -> str | None:
        """The Entra tenant (id) that owns `domain`, from the identity platform's OpenID Connect discovery
        for the domain (`{authority}/{domain}/v2.0/.well-known/openid-configuration`: its `issuer` is
        `{authority}/{tenant id}/v2.0`). None when no tenant owns it (AADSTS90002, a 400); GraphFailure
        (unavailable, timeout) when it cannot be told."""
        url = f"{self.config.authority_host.rstrip('/')}/{quote(domain, safe='')}/v2.0/.well-known/openid-configuration"
        try:
            response = self.session.get(
                url,
                headers={"Accept": "application/json"},
                timeout=(5.0, self.config.graph_timeout),
                verify=self.config.verify,
                allow_redirects=False,
            )
        except requests.Timeout as error:
            raise GraphFailure(M365Reason.TIMEOUT, detail="tenant discovery") from error
        except requests.RequestException as error:
            raise GraphFailure(M365Reason.UNAVAILABLE, detail=type(error).__name__) from error
        if response.status_code in (400, 404):
            return None
        if response.status_code != 200:
            raise GraphFailure(M365Reason.UNAVAILABLE, detail=f"tenant discovery {response.status_code}")
        try:
            issuer = str(response.json()["issuer"])
        except (ValueError, KeyError, TypeError) as error:
            raise GraphFailure(M365Reason.UNAVAILABLE, detail="tenant discovery answer") from error
        found = _ISSUER_TENANT.search(issuer)
        return found.group(1) if found else None

    def verify_mailbox(self, invited: str, access_token: SecretStr) -> GraphMailbox:
        deadline = time.monotonic() + self.config.graph_budget
        me = self._get("/v1.0/me", {"$select": ME_SELECT}, access_token, deadline)
        signed_in = str(me.get("mail") or me.get("userPrincipalName") or "")
        if invited.lower() not in addresses_of(me):
            raise GraphFailure(M365Reason.WRONG_ACCOUNT, signed_in=signed_in or None)
        inbox = self._get("/v1.0/me/mailFolders/inbox", {"$select": INBOX_SELECT}, access_token, deadline)
        try:
            count = int(inbox["totalItemCount"])
        except (KeyError, TypeError, ValueError) as error:
            raise GraphFailure(M365Reason.UNAVAILABLE, detail="no totalItemCount") from error
        return GraphMailbox(address=signed_in, user_id=str(me.get("id") or ""), inbox_item_count=count)

    def inbox_count(self, access_token: SecretStr) -> int:
        """The inbox's item count: one Graph request, the health check's (onboarding.health)."""
        deadline = time.monotonic() + self.config.graph_budget
        inbox = self._get("/v1.0/me/mailFolders/inbox", {"$select": INBOX_SELECT}, access_token, deadline)
        try:
            return int(inbox["totalItemCount"])
        except (KeyError, TypeError, ValueError) as error:
            raise GraphFailure(M365Reason.UNAVAILABLE, detail="no totalItemCount") from error

    def _get(self, path: str, params: dict[str, str], token: SecretStr, deadline: float) -> dict[str, Any]:
        url = f"{self.config.graph_base_url.rstrip('/')}{path}"
        retried_5xx = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GraphFailure(M365Reason.TIMEOUT, detail=path)
            try:
                response = self.session.get(
                    url,
                    params=params,
                    headers={
                        "Authorization": f"Bearer {token.get_secret_value()}",
                        "Accept": "application/json",
                    },
                    timeout=(min(5.0, left), min(self.config.graph_timeout, left)),
                    verify=self.config.verify,
                    allow_redirects=False,
                )
            except requests.Timeout as error:
                raise GraphFailure(M365Reason.TIMEOUT, detail=path) from error
            except requests.RequestException as error:
                raise GraphFailure(M365Reason.UNAVAILABLE, detail=type(error).__name__) from error
            status = response.status_code
            if status == 200:
                body: dict[str, Any] = response.json()
                return body
            code = _graph_code(response)
            logger.info("Graph answered an error", extra={"path": path, "status": status, "graph_code": code})
            if status == 429 or (status >= 500 and not retried_5xx):
                wait = _retry_after(response, default=1.0 if status == 429 else 0.5)
                # 429: Graph's Retry-After is honoured while the budget allows. 5xx: one quick retry, not
                # a long wait the owner watches a spinner through ("try again in a few minutes" instead).
                too_long = status >= 500 and wait > MAX_5XX_WAIT
                if too_long or time.monotonic() + wait >= deadline:
                    reason = M365Reason.THROTTLED if status == 429 else M365Reason.UNAVAILABLE
                    raise GraphFailure(reason, detail=f"{status} {code}")
                retried_5xx = retried_5xx or status >= 500
                time.sleep(wait)
                continue
            if status == 401:
                raise GraphFailure(M365Reason.TOKEN_REJECTED, detail=code)
            if status == 403:
                raise GraphFailure(M365Reason.ACCESS_DENIED, detail=code)
            if status == 404 and (code in _NO_MAILBOX or path.endswith("/inbox")):
                raise GraphFailure(M365Reason.NO_MAILBOX, detail=code)
            raise GraphFailure(M365Reason.UNAVAILABLE, detail=f"{status} {code}")


def _graph_code(response: requests.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("code") or "")[:80]
    except ValueError:
        return ""


def _retry_after(response: requests.Response, *, default: float) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, min(float(value), 120.0))
    except ValueError:
        return default
