"""Is this mailbox Microsoft 365? Decided before any password is typed or sent.

Signals, strongest first:
1. The owner typed an Exchange Online server (`outlook.office365.com`, anything under `office365.com`,
   `outlook.com`, `onmicrosoft.com`, ...): Microsoft 365, whatever else says.
2. Home realm discovery for the address: Microsoft's sign-in page asks
   `GET {authority}/common/userrealm/{address}?api-version=2.1` to learn whether a domain belongs to an
   Entra ID organisation; `NameSpaceType` is `Managed` (Entra checks the password) or `Federated` (an
   organisation's own STS, e.g. AD FS) for Microsoft 365 domains and `Unknown` otherwise.

The lookup sends no credentials (only the address, as the sign-in page does), is bounded by a total
budget, and on any doubt (timeout, error, unexpected answer) the owner gets the Exchange form. Answers
are kept per domain for a few minutes: a domain's realm does not change between two page views.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from onboarding.core.observability import logger
from onboarding.m365.config import M365Config

# Exchange Online's own host names (worldwide, GCC High / DoD, operated by 21Vianet) and the tenants'
# routing domains (`contoso.mail.onmicrosoft.com`).
EXCHANGE_ONLINE_HOSTS = frozenset(
    {"outlook.office365.com", "outlook.office.com", "mail.office365.com", "outlook.office365.us"}
)
EXCHANGE_ONLINE_SUFFIXES = (
    ".office365.com",
    ".office.com",
    ".outlook.com",
    ".onmicrosoft.com",
    ".office365.us",
    ".outlook.cn",
    ".partner.outlook.cn",
)
CACHE_SECONDS = 600.0
_CACHE_MAX = 2048


class Route(StrEnum):
    M365 = "m365"
    EXCHANGE = "exchange"


class Evidence(StrEnum):
    EXCHANGE_ONLINE_SERVER = "exchange_online_server"
    REALM_MANAGED = "realm_managed"
    REALM_FEDERATED = "realm_federated"
    REALM_UNKNOWN = "realm_unknown"
    LOOKUP_FAILED = "lookup_failed"
    NOT_CONFIGURED = "not_configured"


@dataclass(frozen=True)
class RoutingDecision:
    route: Route
    evidence: Evidence

    @property
    def is_m365(self) -> bool:
        return self.route is Route.M365


def is_exchange_online_host(server: str | None) -> bool:
    host = (server or "").strip().lower().rstrip(".")
    return host in EXCHANGE_ONLINE_HOSTS or host.endswith(EXCHANGE_ONLINE_SUFFIXES)


class Router:
    """Decides the route for an address; one per process (it keeps the per-domain answers)."""

    def __init__(self, config: M365Config, session: Any | None = None) -> None:
        self.config = config
        self._session = session
        self._cache: dict[str, tuple[float, RoutingDecision]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="realm")

    @property
    def session(self) -> Any:
        if self._session is None:
            import requests  # only when a lookup really happens (keeps the page's cold start light)

            self._session = requests.Session()
            self._session.trust_env = False  # no proxies or .netrc credentials from the environment
        return self._session

    def decide(self, email: str, server: str | None = None) -> RoutingDecision:
        if not self.config.enabled:
            return RoutingDecision(Route.EXCHANGE, Evidence.NOT_CONFIGURED)
        if is_exchange_online_host(server):
            return RoutingDecision(Route.M365, Evidence.EXCHANGE_ONLINE_SERVER)
        domain = email.rpartition("@")[2].lower()
        cached = self._cached(domain)
        if cached is not None:
            return cached
        future: Future[RoutingDecision] = self._pool.submit(self._realm, email)
        try:
            decision = future.result(timeout=self.config.routing_budget)
        except FutureTimeout:
            logger.info("Realm lookup over budget", extra={"domain": domain})
            return RoutingDecision(Route.EXCHANGE, Evidence.LOOKUP_FAILED)
        if decision.evidence is not Evidence.LOOKUP_FAILED:
            self._remember(domain, decision)
        return decision

    def _realm(self, email: str) -> RoutingDecision:
        url = (
            f"{self.config.authority_host.rstrip('/')}/common/userrealm/"
            f"{quote(email, safe='@')}?api-version=2.1"
        )
        budget = self.config.routing_budget
        try:
            response = self.session.get(
                url,
                headers={"Accept": "application/json"},
                timeout=(min(1.5, budget), budget),
                verify=self.config.verify,
                allow_redirects=False,
            )
            kind = response.json().get("NameSpaceType") if response.status_code == 200 else None
        except Exception as error:  # network, TLS, JSON: all mean "not sure" -> the Exchange form
            logger.info("Realm lookup failed", extra={"error": type(error).__name__})
            return RoutingDecision(Route.EXCHANGE, Evidence.LOOKUP_FAILED)
        if kind == "Managed":
            return RoutingDecision(Route.M365, Evidence.REALM_MANAGED)
        if kind == "Federated":
            return RoutingDecision(Route.M365, Evidence.REALM_FEDERATED)
        if kind == "Unknown":
            return RoutingDecision(Route.EXCHANGE, Evidence.REALM_UNKNOWN)
        logger.info("Unexpected realm answer", extra={"status": response.status_code})
        return RoutingDecision(Route.EXCHANGE, Evidence.LOOKUP_FAILED)

    def _cached(self, domain: str) -> RoutingDecision | None:
        with self._lock:
            hit = self._cache.get(domain)
        if hit is None or time.monotonic() - hit[0] > CACHE_SECONDS:
            return None
        return hit[1]

    def _remember(self, domain: str, decision: RoutingDecision) -> None:
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[domain] = (time.monotonic(), decision)
