"""Autodiscover as Microsoft's clients do it ("Autodiscover for Exchange", "Generate a list of Autodiscover
endpoints", "Handling Autodiscover error messages" on Microsoft Learn; MS-OXDISCO, MS-OXDSCLI).

1. Candidates, probed concurrently *without* credentials, preferred in this order: Autodiscover v2
   (``GET https://autodiscover.<domain>/autodiscover/autodiscover.json/v1.0/<email>?Protocol=EWS``: the EWS
   URL before any password is sent), ``https://<domain>/autodiscover/autodiscover.svc``, ``https://autodiscover.<domain>/...``, the
   unauthenticated ``GET http://autodiscover.<domain>/autodiscover/autodiscover.xml`` whose 302 names the
   server, and the SRV record ``_autodiscover._tcp.<domain>``. A candidate counts only when it answers like
   an autodiscover service (see ``probing``); a website on the bare domain falls through.
2. Redirects: an HTTP redirect gives a host only (we always use the SOAP path, never ``Autodiscover.xml``);
   a ``RedirectAddress`` answer restarts with the new address; a ``RedirectUrl`` answer (HTTPS only) is asked
   again. All redirects share one hop limit (``MAX_HOPS``, as exchangelib's 10); a URL or address seen twice
   is a loop.
3. The password goes only to HTTPS SOAP autodiscover endpoints on hosts in the mailbox's own domain, or to
   hosts the owner confirmed (``confirmed_hosts``). Reached a host in another domain (SRV or redirect: where
   Outlook asks "Allow this website to configure server settings?"), discovery stops with CONFIRM_SERVER
   naming the host, before any password is sent. An answer from an allowed host outside the domain that
   names EWS on yet another host outside it is named to the owner the same way (as Autodiscover v2 is).
4. One authenticated GetUserSettings request per endpoint: a wrong password is sent once. ``ServerBusy`` is
   asked once more within the budget; ``InvalidRequest``, ``InternalServerError`` or an answer that cannot be
   parsed mean AUTODISCOVER_FAILED (ask the owner for the settings), not UNREACHABLE. A 503 or an EWS
   ``ErrorServerBusy`` with a back-off is waited out within the budget (``busy``), else SERVER_BUSY.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .diagnoses import Diagnosis, ExchangeFailure
from .models import ExchangeConfig, ExchangeContext, ExchangeSettings
from .probing import (
    REDIRECT_STATUSES,
    Probe,
    classify,
    probe_autodiscover_v2,
    probe_endpoint,
    transport_code,
    with_login_hint,
)
from .runtime import (
    AUTODISCOVER_PATH,
    EWS_PATH,
    NTLM,
    clear_exchangelib_caches,
    configure_exchangelib,
    domain_of,
    host_of,
    in_domain,
    policy_for,
    run_with_deadline,
)
from .trace import traced

if TYPE_CHECKING:
    from .auth import Challenge
    from .guard import GuardedHTTPAdapter, GuardPolicy, Observation
    from .trace import TraceRecorder

MAX_HOPS = 10
_PLAIN_HOST = re.compile(r"[a-z0-9.:-]{1,253}")
SERVER_BUSY_RETRIES = 1


def soap_endpoint(host: str) -> str:
    return f"https://{host}/{AUTODISCOVER_PATH}"


@dataclass
class Walk:
    """State shared by every step of one discovery: hop count, what was seen, where the password may go."""

    mailbox_domain: str
    confirmed_hosts: frozenset[str]
    deadline: float
    policy: GuardPolicy
    trace: TraceRecorder | None = None
    connections: GuardedHTTPAdapter | None = None  # shared by the walk's requests (see exchange_guard)
    sleep: Callable[[float], None] = time.sleep  # waits out a busy server (ExchangeContext.sleep)
    ews_challenges: tuple[Challenge, ...] = ()  # what the EWS endpoint's 401 offered (settings_for's probe)
    hops: int = 0
    seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hop(self, target: str, seen: set[str] | None = None) -> None:
        """Count one redirect to ``target`` (a URL or an address); refuse loops (within ``seen``, by default
        every address and URL this walk was sent to) and long chains."""
        key = target.strip().lower()
        seen = self.seen if seen is None else seen
        with self.lock:
            if key in seen:
                raise ExchangeFailure(
                    Diagnosis.AUTODISCOVER_FAILED, f"redirect loop at {host_of(key) or key}"
                )
            if self.hops >= MAX_HOPS:
                raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, f"more than {MAX_HOPS} redirects")
            self.hops += 1
            seen.add(key)

    def check_destination(self, url: str, *, path: str = AUTODISCOVER_PATH) -> None:
        """The password-destination rule (module docstring, point 3)."""
        from .guard import is_microsoft_online

        host = host_of(url)
        if is_microsoft_online(host):
            raise ExchangeFailure(Diagnosis.MODERN_AUTH_REQUIRED, f"sent to {host} (Exchange Online)")
        if not url.lower().startswith("https://") or not url.lower().endswith(path.lower()):
            raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, f"not an HTTPS {path} endpoint")
        if not (in_domain(host, self.mailbox_domain) or host in self.confirmed_hosts):
            if not _PLAIN_HOST.fullmatch(host):
                # Shown to the owner to allow: only a name that reads as it is (no bidi controls, look-alike
                # or invisible characters: letters, digits, dots, hyphens, an IP address).
                raise ExchangeFailure(
                    Diagnosis.AUTODISCOVER_FAILED,
                    "settings offered by a server whose name is not plain ASCII",
                )
            raise ExchangeFailure(
                Diagnosis.CONFIRM_SERVER,
                f"settings offered by {host}, outside {self.mailbox_domain}",
                host=host,
            )


# ---------------------------------------------------------------- candidates (unauthenticated)


def follow(probe: Probe, walk: Walk) -> Probe:
    """Follow an HTTP redirect answered by a candidate: its host only, with the SOAP path."""
    chain = {probe.url.lower()}
    while probe.redirect is not None:
        location = probe.redirect
        if not location.lower().startswith("https://") or not host_of(location):
            return Probe(
                probe.url, failure=Diagnosis.AUTODISCOVER_FAILED, detail="redirect to a non-HTTPS URL"
            )
        target = soap_endpoint(host_of(location))
        walk.hop(target, chain)
        probe = probe_endpoint(target, walk.sleep)
    return probe


def _http_redirect_target(domain: str) -> str | None:
    """Step 3: unauthenticated ``GET http://autodiscover.<domain>/autodiscover/autodiscover.xml``; the HTTPS
    Location of its 302, if any (only its host is used)."""
    from .guard import GuardError, guarded_session

    try:
        with guarded_session() as session:
            response = session.get(
                f"http://autodiscover.{domain}/autodiscover/autodiscover.xml",
                allow_redirects=False,
                timeout=30,
            )
            response.close()
    except (GuardError, OSError):
        return None
    location = response.headers.get("Location", "")
    if response.status_code in REDIRECT_STATUSES and location.lower().startswith("https://"):
        return location
    return None


def _srv_target(domain: str) -> str | None:
    """Step 4: the SRV record ``_autodiscover._tcp.<domain>`` (port 443 only, like exchangelib)."""
    import dns.exception
    import dns.resolver
    from exchangelib.autodiscover import Autodiscovery

    from .guard import current

    resolver = dns.resolver.Resolver(**Autodiscovery.DNS_RESOLVER_KWARGS)
    for key, value in Autodiscovery.DNS_RESOLVER_ATTRS.items():
        setattr(resolver, key, value)
    remaining = current().remaining()
    lifetime = max(0.1, min(remaining, 10.0)) if remaining is not None else 10.0
    resolver.timeout = min(float(resolver.timeout), lifetime)
    try:
        answers = resolver.resolve(f"_autodiscover._tcp.{domain}.", "SRV", lifetime=lifetime)
    except dns.resolver.LifetimeTimeout:
        current().observation.transport.append("timeout")
        return None
    except dns.exception.DNSException:
        return None
    records = sorted((r.priority, -r.weight, str(r.target).rstrip(".")) for r in answers if r.port == 443)
    return records[0][2] if records else None


def _candidate_jobs(domain: str, address: str, walk: Walk) -> list[tuple[str, Callable[[], Probe | None]]]:
    def direct(url: str) -> Callable[[], Probe | None]:
        return lambda: follow(probe_endpoint(url, walk.sleep), walk)

    def via_redirect() -> Probe | None:
        target = _http_redirect_target(domain)
        if not target:
            return None
        url = soap_endpoint(host_of(target))
        walk.hop(url, set())
        return follow(probe_endpoint(url, walk.sleep), walk)

    def via_srv() -> Probe | None:
        target = _srv_target(domain)
        return follow(probe_endpoint(soap_endpoint(target), walk.sleep), walk) if target else None

    return [
        ("autodiscover_v2", lambda: probe_autodiscover_v2(f"autodiscover.{domain}", address)),
        ("domain", direct(soap_endpoint(domain))),
        ("autodiscover", direct(soap_endpoint(f"autodiscover.{domain}"))),
        ("http_redirect", via_redirect),
        ("srv", via_srv),
    ]


@dataclass
class _Outcome:
    probe: Probe | None
    obs: Observation


def _probe_candidates(domain: str, address: str, walk: Walk, probe_timeout: float) -> list[_Outcome]:
    """Run the candidates concurrently; return outcomes in preference order.

    Stops waiting as soon as the earliest candidate that can still win has an answer (a live higher-priority
    candidate wins exactly as in a sequential walk).
    """
    from .guard import Observation, guarded

    jobs = _candidate_jobs(domain, address, walk)
    results: list[queue.Queue[_Outcome]] = [queue.Queue(maxsize=1) for _ in jobs]
    probe_deadline = min(walk.deadline, time.monotonic() + probe_timeout)

    def runner(index: int, name: str, job: Callable[[], Probe | None]) -> None:
        started = time.monotonic()
        with guarded(
            walk.policy, deadline=probe_deadline, trace=walk.trace, connections=walk.connections
        ) as obs:
            try:
                probe = job()
            except ExchangeFailure as failure:
                probe = Probe("", failure=failure.code, detail=failure.detail)
            except Exception as e:
                probe = Probe(
                    "", failure=transport_code(obs) or Diagnosis.AUTODISCOVER_FAILED, detail=type(e).__name__
                )
            if walk.trace:
                walk.trace.add(
                    "candidate",
                    url=probe.url if probe else None,
                    host=f"{name} ({domain})",
                    status=probe.status if probe else None,
                    schemes=probe.offered if probe else (),
                    result=_candidate_result(probe),
                    started=started,
                )
            results[index].put(_Outcome(probe, obs))

    for index, (name, job) in enumerate(jobs):
        threading.Thread(
            target=runner, args=(index, name, job), name=f"exchange-probe-{name}", daemon=True
        ).start()
    outcomes: list[_Outcome] = []
    for result in results:
        try:
            outcome = result.get(timeout=max(0.0, probe_deadline - time.monotonic()) + 0.25)
        except queue.Empty:
            timed_out = Observation(transport=["timeout"])
            outcome = _Outcome(Probe("", failure=Diagnosis.TIMEOUT, detail="no answer in time"), timed_out)
        outcomes.append(outcome)
        if outcome.probe is not None and outcome.probe.live:
            break
    return outcomes


def _candidate_result(probe: Probe | None) -> str:
    if probe is None:
        return "no such candidate (no redirect, no SRV record)"
    if probe.ews_url:
        return f"Autodiscover v2 names EWS {probe.ews_url}"
    if probe.live:
        return f"an autodiscover service (sign-in: {probe.auth_type})"
    return f"not usable: {probe.failure.value if probe.failure else '?'} {probe.detail}".strip()


def _no_candidate_verdict(outcomes: list[_Outcome]) -> ExchangeFailure:
    """Why autodiscovery found nothing: the most telling failure among the candidates."""
    probes = [o.probe for o in outcomes if o.probe is not None]
    summary = "; ".join(
        f"{host_of(p.url) or '?'}: {p.failure.value if p.failure else 'no'} {p.detail}" for p in probes
    )
    codes = {p.failure for p in probes} | {transport_code(o.obs) for o in outcomes}
    for code in (Diagnosis.MODERN_AUTH_REQUIRED, Diagnosis.BLOCKED_ADDRESS):
        if code in codes:
            return ExchangeFailure(code, f"autodiscover: {summary}")
    # The bare domain (the second candidate) is usually just a website: only the Exchange-specific candidates
    # make a certificate or timeout problem the verdict.
    specific = [o.probe for i, o in enumerate(outcomes) if i != 1 and o.probe is not None]
    for code in (Diagnosis.TLS_ERROR, Diagnosis.TIMEOUT, Diagnosis.SERVER_BUSY):
        if any(p.failure == code for p in specific):
            return ExchangeFailure(code, f"autodiscover: {summary}")
    return ExchangeFailure(
        Diagnosis.AUTODISCOVER_FAILED, f"autodiscover: {summary or 'no candidate answered'}"
    )


# ---------------------------------------------------------------- discover


def discover(email: str, password: str, context: ExchangeContext) -> ExchangeSettings:
    """Find the EWS settings for ``email`` (autodiscover, SOAP). Raises ``ExchangeFailure``.

    ``context`` gives the login (``username``), the servers in another domain the owner allowed
    (``confirmed_hosts``), the budgets (``config``) and the IT admin's trace (``trace``, optional)."""
    trace = context.trace
    with traced(trace, "discover", password, host_on_failure=True):
        settings = _discover_traced(email, password, context)
    if trace is not None:
        trace.add("verdict", url=settings.ews_url, result=f"found EWS (sign-in: {settings.auth_type})")
        trace.verdict = "found"
    return settings


def _discover_traced(email: str, password: str, context: ExchangeContext) -> ExchangeSettings:
    from .guard import is_microsoft_online

    domain = domain_of(email)
    if is_microsoft_online(domain):
        raise ExchangeFailure(Diagnosis.MODERN_AUTH_REQUIRED, f"{domain} is Exchange Online")
    from .guard import GuardedHTTPAdapter

    configure_exchangelib()
    config = context.config
    deadline = time.monotonic() + config.discovery_timeout
    connections = GuardedHTTPAdapter(max_retries=0)
    walk = Walk(
        connections=connections,
        mailbox_domain=domain,
        confirmed_hosts=frozenset(h.strip().lower().rstrip(".") for h in context.confirmed_hosts),
        deadline=deadline,
        policy=policy_for(config),
        trace=context.trace,
        sleep=context.sleep,
    )
    login = context.login(email)
    try:
        return run_with_deadline(
            lambda: _discover(email.strip(), password, login, walk, config), deadline, "discover", password
        )
    finally:
        connections.close()
        clear_exchangelib_caches()


def _discover(email: str, password: str, login: str, walk: Walk, config: ExchangeConfig) -> ExchangeSettings:
    from .guard import is_microsoft_online

    address = email
    walk.seen.add(address.lower())
    probe_budget = max(1.0, config.discovery_timeout * 0.4)
    while True:
        domain = domain_of(address)
        if is_microsoft_online(domain):
            raise ExchangeFailure(Diagnosis.MODERN_AUTH_REQUIRED, f"redirected to {domain} (Exchange Online)")
        outcomes = _probe_candidates(domain, address, walk, probe_budget)
        chosen = next((o.probe for o in outcomes if o.probe is not None and o.probe.live), None)
        if chosen is None:
            raise _no_candidate_verdict(outcomes)
        if chosen.ews_url is not None:
            # Autodiscover v2 named the EWS URL before any password was sent: the password goes there only if
            # the destination rule allows it (Exchange Online, another domain: stop here).
            walk.check_destination(chosen.ews_url, path=EWS_PATH)
            return settings_for(chosen.ews_url, login, walk, build=None)
        answer = _ask_following_urls(chosen, address, password, login, walk)
        if answer.redirect_address:
            if walk.trace:
                walk.trace.add(
                    "redirect", result=f"RedirectAddress to the domain {domain_of(answer.redirect_address)}"
                )
            walk.hop(answer.redirect_address)
            address = answer.redirect_address
            continue
        settings = answer.user_settings
        ews_url = settings.get("external_ews_url") or settings.get("internal_ews_url")
        if not ews_url:
            raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, "autodiscover answered no EWS URL")
        if not in_domain(host_of(answer.answered_by), walk.mailbox_domain):
            # A server outside the mailbox's domain (one the owner allowed) speaks for that server only: EWS
            # it names on yet another host is named to the owner first, as an Autodiscover v2 answer is.
            walk.check_destination(ews_url, path=EWS_PATH)
        return settings_for(ews_url, login, walk, build=settings.get("cas_version"))


def _answer_summary(response: Any) -> str:
    if response.redirect_address:
        return "RedirectAddress"
    if response.redirect_url:
        return "RedirectUrl"
    settings = dict(response.user_settings or {})
    ews = settings.get("external_ews_url") or settings.get("internal_ews_url")
    if getattr(response, "error_code", None) not in (None, "NoError"):
        return f"ErrorCode {response.error_code}"
    return f"NoError; EWS {ews or 'not given'}; Exchange build {settings.get('cas_version') or '?'}"


@dataclass(frozen=True)
class _Answer:
    user_settings: dict[str, str]
    redirect_address: str | None = None
    answered_by: str = ""  # the autodiscover endpoint (URL) that gave this answer


def _ask_following_urls(probe: Probe, address: str, password: str, login: str, walk: Walk) -> _Answer:
    """GetUserSettings at ``probe.url``; a RedirectUrl answer is asked again at its host (HTTPS only)."""
    while True:
        walk.check_destination(probe.url)
        answer, redirect_url = _get_user_settings(probe, address, password, login, walk)
        if redirect_url is None:
            return replace(answer, answered_by=probe.url)
        if walk.trace:
            walk.trace.add("redirect", url=redirect_url, result="RedirectUrl")
        if not redirect_url.lower().startswith("https://") or not host_of(redirect_url):
            raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, "autodiscover redirected to a non-HTTPS URL")
        target = soap_endpoint(host_of(redirect_url))
        walk.hop(target)
        from .guard import guarded

        with guarded(walk.policy, deadline=walk.deadline, trace=walk.trace, connections=walk.connections):
            probe = follow(probe_endpoint(target, walk.sleep), walk)
        if not probe.live:
            raise ExchangeFailure(
                probe.failure or Diagnosis.AUTODISCOVER_FAILED,
                f"redirect target {host_of(target)}: {probe.detail}",
            )


def _get_user_settings(
    probe: Probe, address: str, password: str, login: str, walk: Walk
) -> tuple[_Answer, str | None]:
    """One authenticated GetUserSettings request (``ServerBusy``: once more within the budget)."""
    from exchangelib import Configuration, Credentials
    from exchangelib import errors as ex
    from exchangelib.autodiscover import AutodiscoverProtocol

    from .basic import announces_utf8
    from .busy import DEFAULT_BACK_OFF, BudgetedRetry, Patience
    from .guard import GuardedHTTPAdapter, guarded

    for attempt in range(SERVER_BUSY_RETRIES + 1):
        protocol_cls = type(
            "GuardedAutodiscoverProtocol",
            (AutodiscoverProtocol,),
            {
                "HTTP_ADAPTER_CLS": GuardedHTTPAdapter,
                "TIMEOUT": max(1.0, walk.deadline - time.monotonic()),
                "RETRY_WAIT": DEFAULT_BACK_OFF,
                "create_session": preemptive_sessions(probe.offered, announces_utf8(probe.challenges)),
            },
        )
        protocol = protocol_cls(
            config=Configuration(
                service_endpoint=probe.url,
                credentials=Credentials(login, password),
                auth_type=probe.auth_type,
                retry_policy=BudgetedRetry(Patience(walk.deadline, walk.sleep)),
            )
        )
        started = time.monotonic()
        with guarded(
            walk.policy, deadline=walk.deadline, trace=walk.trace, connections=walk.connections
        ) as obs:
            try:
                response: Any = protocol.get_user_settings(user=address)
                if walk.trace:
                    walk.trace.add(
                        "autodiscover", url=probe.url, result=_answer_summary(response), started=started
                    )
                if response.redirect_address or response.redirect_url:
                    return _Answer({}, redirect_address=response.redirect_address), response.redirect_url
                response.raise_errors()
                return _Answer(dict(response.user_settings or {})), None
            except ex.ErrorServerBusy:
                if walk.trace:
                    walk.trace.add(
                        "autodiscover", url=probe.url, result="ErrorCode ServerBusy", started=started
                    )
                if attempt < SERVER_BUSY_RETRIES and walk.deadline - time.monotonic() > 1.0:
                    continue
                raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, "autodiscover: ServerBusy") from None
            except Exception as e:
                failure = with_login_hint(classify(e, obs, during="autodiscover"), login, obs)
                if walk.trace:
                    walk.trace.add(
                        "autodiscover",
                        url=probe.url,
                        result=f"{failure.code.value} ({type(e).__name__})",
                        started=started,
                    )
                raise failure from None
            finally:
                protocol.close()
    raise AssertionError("unreachable")  # pragma: no cover


def preemptive_sessions(offered: tuple[str, ...], utf8_basic: bool = False) -> Callable[[Any], Any]:
    """A protocol's ``create_session`` whose NTLM sessions send NEGOTIATE with the first request (``ntlm``) and
    whose Basic sessions send the credentials in UTF-8, normalised if the server announced it (``basic``)."""

    def create_session(self: Any) -> Any:
        from . import basic, ntlm
        from .guard import share_connections

        session = share_connections(super(type(self), self).create_session())
        return basic.install(ntlm.install(session, offered=offered), utf8_announced=utf8_basic)

    return create_session


def settings_for(ews_url: str, login: str, walk: Walk, build: str | None) -> ExchangeSettings:
    """Check the EWS URL (name, guard, auth offered) without credentials and package the settings."""
    from .guard import guarded, is_microsoft_online

    host = host_of(ews_url)
    if not ews_url.lower().startswith("https://") or not host:
        raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, "autodiscover answered a non-HTTPS EWS URL")
    if is_microsoft_online(host):
        raise ExchangeFailure(Diagnosis.MODERN_AUTH_REQUIRED, f"EWS URL is on {host} (Exchange Online)")
    with guarded(walk.policy, deadline=walk.deadline, trace=walk.trace, connections=walk.connections):
        probe = probe_endpoint(ews_url, walk.sleep)
    walk.ews_challenges = probe.challenges
    if not probe.live:
        code = probe.failure or Diagnosis.UNREACHABLE
        if code == Diagnosis.AUTODISCOVER_FAILED:
            code = Diagnosis.UNREACHABLE
        raise ExchangeFailure(code, f"EWS endpoint {host}: {probe.detail}")
    return ExchangeSettings(
        ews_url=ews_url, server=host, auth_type=probe.auth_type or NTLM, server_build=build, username=login
    )
