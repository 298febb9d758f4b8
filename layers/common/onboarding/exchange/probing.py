"""One unauthenticated look at an endpoint, and the classification of failures into verdicts.

A candidate counts only when it answers like an autodiscover (or EWS) service: a 401 whose challenge we
can answer (or a Bearer-only one: Exchange Online), or a SOAP answer. A website (HTML), a 404 or any other
answer falls through to the next candidate ("Autodiscover for Exchange", Microsoft Learn). A redirect is
reported to the caller, which follows it within the walk's hop limit, taking only its host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .auth import Challenge, choose_auth_type, is_bearer_only, parse_challenges, schemes
from .diagnoses import EXAMPLE_DOMAIN, Diagnosis, ExchangeFailure
from .runtime import NOAUTH

if TYPE_CHECKING:
    from ..exchange_guard import Observation

REDIRECT_STATUSES = (301, 302, 303, 307, 308)

_PROBE_BODY = (
    '<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
    "<s:Body/></s:Envelope>"
)


@dataclass(frozen=True)
class Probe:
    """What one unauthenticated POST to ``url`` showed."""

    url: str
    auth_type: str | None = None  # set when the endpoint answers like the service and we can authenticate
    failure: Diagnosis | None = None
    detail: str = ""
    status: int | None = None
    offered: tuple[str, ...] = ()  # schemes of the 401 challenge, lower-case
    challenges: tuple[Challenge, ...] = ()
    redirect: str | None = None  # Location of a 3xx answer
    ews_url: str | None = None  # Autodiscover v2 named the EWS URL (no password needed to learn it)

    @property
    def live(self) -> bool:
        return self.auth_type is not None or self.ews_url is not None


def transport_code(obs: Observation) -> Diagnosis | None:
    if obs.blocked:
        return Diagnosis.BLOCKED_ADDRESS
    if obs.modern_hosts:
        return Diagnosis.MODERN_AUTH_REQUIRED
    if "tls" in obs.transport:
        return Diagnosis.TLS_ERROR
    if "timeout" in obs.transport:
        return Diagnosis.TIMEOUT
    if "unreachable" in obs.transport:
        return Diagnosis.UNREACHABLE
    return None


def probe_endpoint(url: str) -> Probe:
    """POST an empty SOAP envelope without credentials: is this the service, and which auth does it ask for?"""
    from ..exchange_guard import GuardError, current, guarded_session

    obs = current().observation
    try:
        with guarded_session() as session:
            response = session.post(
                url,
                data=_PROBE_BODY,
                headers={
                    "Content-Type": "text/xml; charset=utf-8",
                    "X-AnchorMailbox": "probe@example.invalid",
                },
                allow_redirects=False,
                timeout=30,
            )
            body = response.content[:2048]
            response.close()
    except (GuardError, OSError) as e:
        failure = transport_code(obs) or (Diagnosis.BLOCKED_ADDRESS if isinstance(e, GuardError) else None)
        return Probe(url, failure=failure or Diagnosis.UNREACHABLE, detail=type(e).__name__)
    status = response.status_code
    content_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if status in REDIRECT_STATUSES:
        location = response.headers.get("Location", "")
        return Probe(
            url,
            failure=Diagnosis.AUTODISCOVER_FAILED,
            detail=f"HTTP {status}",
            status=status,
            redirect=location,
        )
    if status == 401:
        raw = response.raw.headers.getlist("WWW-Authenticate") if response.raw is not None else []
        challenges = tuple(parse_challenges(raw))
        offered = schemes(challenges)
        auth = choose_auth_type(offered)
        if auth:
            return Probe(url, auth_type=auth, status=401, offered=offered, challenges=challenges)
        if is_bearer_only(offered):
            return Probe(
                url,
                failure=Diagnosis.MODERN_AUTH_REQUIRED,
                detail="401 offers only Bearer",
                status=401,
                offered=offered,
                challenges=challenges,
            )
        return Probe(
            url,
            failure=Diagnosis.AUTODISCOVER_FAILED,
            detail=f"401 offers no usable scheme ({', '.join(offered) or 'none'})",
            status=401,
            offered=offered,
        )
    if status == 200 and content_type in ("text/xml", "application/soap+xml") and b"Envelope" in body:
        return Probe(url, auth_type=NOAUTH, status=200)
    return Probe(
        url,
        failure=Diagnosis.AUTODISCOVER_FAILED,
        detail=f"not the service: HTTP {status} {content_type or 'no content type'}",
        status=status,
    )


def probe_autodiscover_v2(host: str, email: str) -> Probe | None:
    """Autodiscover v2: ``GET https://<host>/autodiscover/autodiscover.json/v1.0/<email>?Protocol=EWS``,
    unauthenticated, answers ``{"Protocol": "EWS", "Url": ...}`` where the server supports it (Exchange 2019,
    Exchange Online). Anything else (a 404, a website, a redirect) means "not here": None."""
    from urllib.parse import quote

    from ..exchange_guard import GuardError, guarded_session

    url = f"https://{host}/autodiscover/autodiscover.json/v1.0/{quote(email, safe='@')}?Protocol=EWS"
    try:
        with guarded_session() as session:
            response = session.get(
                url, headers={"Accept": "application/json"}, allow_redirects=False, timeout=30
            )
            body = response.content[:4096]
            response.close()
    except (GuardError, OSError):
        return None
    content_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if response.status_code != 200 or content_type != "application/json":
        return None
    import json

    try:
        answer = json.loads(body)
    except ValueError:
        return None
    ews_url = answer.get("Url") if isinstance(answer, dict) else None
    if not isinstance(ews_url, str) or str(answer.get("Protocol", "")).lower() != "ews":
        return None
    return Probe(url.split("?", 1)[0], status=200, ews_url=ews_url)


def with_login_hint(failure: ExchangeFailure, login: str, obs: Observation) -> ExchangeFailure:
    """An email address refused as the login: suggest ``DOMAIN\\user`` (the domain the NTLM challenge named,
    when it did)."""
    if failure.code is not Diagnosis.AUTH_FAILED or "@" not in login or "\\" in login:
        return failure
    user = login.split("@", 1)[0]
    failure.hint = f"{obs.ntlm_domain or EXAMPLE_DOMAIN}\\{user}"
    return failure


def classify(exc: BaseException, obs: Observation, *, during: str) -> ExchangeFailure:
    """Map an exception (by type) plus what the adapter saw (HTTP statuses, challenges) to a verdict.

    An answer we cannot make sense of during autodiscover means "ask for the settings"
    (AUTODISCOVER_FAILED); during verification, the server at that address is not a working EWS (UNREACHABLE).
    """
    from exchangelib import errors as ex

    from ..exchange_guard import BlockedAddressError, ModernAuthHostError

    kind = type(exc).__name__
    if isinstance(exc, ExchangeFailure):
        return exc
    if isinstance(exc, BlockedAddressError) or obs.blocked:
        return ExchangeFailure(
            Diagnosis.BLOCKED_ADDRESS, f"{during}: refused {', '.join(obs.blocked) or kind}"
        )
    if isinstance(exc, ModernAuthHostError) or obs.modern_hosts or obs.bearer_only:
        return ExchangeFailure(
            Diagnosis.MODERN_AUTH_REQUIRED, f"{during}: server accepts only OAuth ({kind})"
        )
    if 456 in obs.statuses or isinstance(exc, ex.ErrorAccountDisabled):
        return ExchangeFailure(Diagnosis.ACCOUNT_LOCKED, f"{during}: account locked or disabled ({kind})")
    if isinstance(exc, ex.UnauthorizedError):
        return ExchangeFailure(Diagnosis.AUTH_FAILED, f"{during}: credentials refused ({kind})")
    if isinstance(exc, ex.ErrorNonExistentMailbox | ex.ErrorMailRecipientNotFound):
        return ExchangeFailure(Diagnosis.MAILBOX_NOT_FOUND, f"{during}: no such mailbox ({kind})")
    if isinstance(exc, ex.ErrorAccessDenied | ex.ErrorImpersonateUserDenied | ex.ErrorItemNotFound):
        return ExchangeFailure(Diagnosis.ACCESS_DENIED, f"{during}: no rights on the mailbox ({kind})")
    transport = transport_code(obs)
    if transport is not None:
        return ExchangeFailure(transport, f"{during}: {transport.value} ({kind})")
    if during == "autodiscover":
        return ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, f"{during}: {kind}")
    return ExchangeFailure(Diagnosis.UNREACHABLE, f"{during}: unexpected answer ({kind})")
