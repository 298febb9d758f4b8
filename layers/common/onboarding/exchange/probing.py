"""One unauthenticated look at an endpoint, and the classification of failures into verdicts.

A candidate counts only when it answers like an autodiscover (or EWS) service: a 401 whose challenge we
can answer (or a Bearer-only one: Exchange Online), or a SOAP answer. A website (HTML), a 404 or any other
answer falls through to the next candidate ("Autodiscover for Exchange", Microsoft Learn). A redirect is
reported to the caller, which follows it within the walk's hop limit, taking only its host. A 503 (HTTP.sys, a
load balancer draining: RFC 9110 section 15.6.4) is the service saying "later": its ``Retry-After`` is waited
out within the budget and the look taken again (no credentials go with it); beyond the budget, SERVER_BUSY.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .auth import Challenge, choose_auth_type, is_bearer_only, parse_challenges, schemes
from .diagnoses import EXAMPLE_DOMAIN, Diagnosis, ExchangeFailure
from .runtime import NOAUTH

if TYPE_CHECKING:
    from .guard import Observation

REDIRECT_STATUSES = (301, 302, 303, 307, 308)
UNAVAILABLE_LOOKS = 3  # unauthenticated looks at an endpoint that answers 503 (each after the wait it asks)

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
    retry_after: float | None = None  # seconds a 503 asked to wait (its Retry-After)
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


def probe_endpoint(url: str, sleep: Callable[[float], None] = time.sleep) -> Probe:
    """POST an empty SOAP envelope without credentials: is this the service, and which auth does it ask for?
    A 503 is asked again after the wait its ``Retry-After`` names, while the budget allows (``sleep`` waits)."""
    from .busy import DEFAULT_BACK_OFF, Patience
    from .guard import current

    ctx = current()
    for _ in range(UNAVAILABLE_LOOKS - 1):
        probe = _look(url)
        if probe.failure is not Diagnosis.SERVER_BUSY or ctx.deadline is None:
            return probe
        wait = probe.retry_after if probe.retry_after is not None else DEFAULT_BACK_OFF
        if not Patience(ctx.deadline, sleep).allows(wait):
            return probe
        if ctx.trace is not None:
            ctx.trace.add("http", url=url, status=503, result=f"busy: waited {wait:g} s as the server asked")
        sleep(wait)
    return _look(url)


def _look(url: str) -> Probe:
    from .guard import GuardError, current, guarded_session

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
    if status == 503:
        from .busy import retry_after_seconds

        value = response.headers.get("Retry-After")
        return Probe(
            url,
            failure=Diagnosis.SERVER_BUSY,
            detail=f"HTTP 503, Retry-After {value or 'not given'}",
            status=503,
            retry_after=retry_after_seconds(value),
        )
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

    from .guard import GuardError, guarded_session

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

    from .guard import BlockedAddressError, ModernAuthHostError

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
    if isinstance(exc, ex.RateLimitError):
        return ExchangeFailure(
            Diagnosis.SERVER_BUSY,
            f"{during}: the server asked to wait {exc.wait:g} s, beyond the time budget",
        )
    if isinstance(exc, ex.ErrorNonExistentMailbox | ex.ErrorMailRecipientNotFound):
        return ExchangeFailure(Diagnosis.MAILBOX_NOT_FOUND, f"{during}: no such mailbox ({kind})")
    if isinstance(exc, ex.ErrorAccessDenied | ex.ErrorImpersonateUserDenied | ex.ErrorItemNotFound):
        if 403 in obs.statuses:
            return ExchangeFailure(
                Diagnosis.ACCESS_DENIED,
                f"{during}: HTTP 403 after signing in (EWS turned off for this mailbox?)",
            )
        return ExchangeFailure(Diagnosis.ACCESS_DENIED, f"{during}: no rights on the mailbox ({kind})")
    transport = transport_code(obs)
    if transport is not None:
        return ExchangeFailure(transport, f"{during}: {transport.value} ({kind})")
    if during == "autodiscover":
        return ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, f"{during}: {kind}")
    return ExchangeFailure(Diagnosis.UNREACHABLE, f"{during}: unexpected answer ({kind})")
