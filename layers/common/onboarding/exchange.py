"""Connect a customer's on-premises Exchange mailbox with email + password: discover settings, verify access.

Pure domain logic (no AWS). exchangelib and the HTTP guard are imported lazily, inside the functions, so that
``import onboarding.exchange`` stays cheap for every Lambda that only needs the codes and messages.

* ``discover()`` finds the EWS URL and auth type: the four autodiscover candidates (``https://<domain>``,
  ``https://autodiscover.<domain>``, the HTTP redirect on ``autodiscover.<domain>:80``, the SRV record) are probed
  concurrently *without* credentials; the best live one (in exchangelib's order) then gets the single
  authenticated SOAP GetUserSettings request. A wrong password is therefore sent once, never retried.
* ``verify()`` proves access: the inbox's item count and the server build, through exchangelib's ``Account``.

Every connection goes through ``exchange_guard.GuardedHTTPAdapter`` (SSRF guard, time budget, observations).
Failures are classified by exception type and HTTP status into ``Diagnosis`` codes; the password never appears
in an exception, a ``detail`` or a log record.
"""

from __future__ import annotations

import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from .exchange_guard import GuardPolicy, Observation

log = logging.getLogger(__name__)

T = TypeVar("T")

AUTODISCOVER_PATH = "autodiscover/autodiscover.svc"
EWS_PATH = "EWS/Exchange.asmx"
NTLM, BASIC, DIGEST, NOAUTH = "NTLM", "basic", "digest", "no authentication"  # exchangelib's auth type names
_NOISY_LOGGERS = ("exchangelib", "requests_ntlm", "spnego", "urllib3")


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
    BLOCKED_ADDRESS = "blocked_address"


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
        "You signed in, but this login is not allowed to open this mailbox. Sign in with the login that "
        "belongs to this mailbox, or ask the person who runs your company's email to give it access."
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
        "We could not reach your email server. Check the server name. If you normally need a VPN to reach "
        "your email, ask the person who runs your company's email to make the server reachable from the internet."
    ),
    Diagnosis.TLS_ERROR: (
        "Your email server's security certificate is not valid for this server name, so we did not send your "
        "password. Check the server name, or ask the person who runs your company's email to fix the certificate."
    ),
    Diagnosis.TIMEOUT: (
        "Your email server took too long to answer. Try again in a few minutes; if it keeps happening, check "
        "the server name or ask the person who runs your company's email."
    ),
    Diagnosis.BLOCKED_ADDRESS: (
        "This server address points to a private or internal network, which we cannot connect to. Enter the "
        "public name of your email server."
    ),
}


def message_for(code: Diagnosis) -> str:
    """Plain words a mailbox owner can act on."""
    return _MESSAGES[Diagnosis(code)]


class ExchangeFailure(Exception):
    """A verdict other than success. ``detail`` is safe for logs: it never contains the password."""

    def __init__(self, code: Diagnosis, detail: str = "") -> None:
        self.code = Diagnosis(code)
        self.detail = detail
        super().__init__(code, detail)

    def __str__(self) -> str:
        return f"{self.code.value}: {self.detail}" if self.detail else self.code.value

    def __repr__(self) -> str:
        return f"ExchangeFailure(code={self.code.value!r}, detail={self.detail!r})"


class ExchangeSettings(BaseModel):
    """What discovery found (record it; hand it back to ``verify`` to skip the probes)."""

    model_config = ConfigDict(frozen=True)

    ews_url: str
    server: str
    auth_type: str
    server_build: str | None = None
    username: str


class VerificationResult(BaseModel):
    settings: ExchangeSettings
    inbox_item_count: int
    server_build: str | None = None


class ExchangeConfig(BaseModel):
    """Time budgets (seconds, per call) and the guard's options."""

    model_config = ConfigDict(frozen=True)

    discovery_timeout: float = Field(default=15, gt=0)
    verify_timeout: float = Field(default=20, gt=0)
    allow_networks: tuple[str, ...] = ()  # local stack and tests only, e.g. ("127.0.0.0/8", "::1/128")
    ca_bundle: str | None = None  # extra CA to trust (the simulator's); system CAs stay trusted

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ExchangeConfig:
        """EXCHANGE_DISCOVERY_TIMEOUT, EXCHANGE_VERIFY_TIMEOUT, EXCHANGE_ALLOW_NETWORKS, EXCHANGE_CA_BUNDLE."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for key, name in (
            ("discovery_timeout", "EXCHANGE_DISCOVERY_TIMEOUT"),
            ("verify_timeout", "EXCHANGE_VERIFY_TIMEOUT"),
            ("allow_networks", "EXCHANGE_ALLOW_NETWORKS"),
            ("ca_bundle", "EXCHANGE_CA_BUNDLE"),
        ):
            if env.get(name):
                values[key] = env[name]
        return cls(**values)


# ---------------------------------------------------------------- exchangelib set-up (once per process)

_CONFIGURE_LOCK = threading.Lock()
_configured = False


def _quiet_loggers() -> None:
    # exchangelib logs request headers (Basic credentials included) at DEBUG; spnego/requests_ntlm log tokens.
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_exchangelib() -> None:
    """Import exchangelib safely and set its process-wide knobs once. Idempotent, thread-safe."""
    global _configured
    if _configured:
        return
    with _CONFIGURE_LOCK:
        if _configured:
            return
        # Python 3.13 on Lambda: getpass.getuser() (used for the cache file name) fails without a passwd entry.
        os.environ.setdefault("USER", "lambda")
        _quiet_loggers()
        import tempfile  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415

        import exchangelib.autodiscover.cache as ad_cache  # noqa: PLC0415

        # Keep exchangelib's persistent autodiscover cache in the writable temp dir (/tmp on Lambda).
        ad_cache.AUTODISCOVER_PERSISTENT_STORAGE = Path(tempfile.gettempdir(), ad_cache.shelve_filename())
        _configured = True


def clear_exchangelib_caches() -> None:
    """Forget autodiscover results and cached protocols (they hold credentials); close their connections."""
    from exchangelib.autodiscover import autodiscover_cache  # noqa: PLC0415
    from exchangelib.protocol import CachingProtocol  # noqa: PLC0415

    with autodiscover_cache:
        autodiscover_cache.close()
        try:
            autodiscover_cache.clear()
        except OSError:
            log.warning("could not clear exchangelib's autodiscover cache file")
    CachingProtocol.clear_cache()


# ---------------------------------------------------------------- helpers


def _domain_of(email: str) -> str:
    local, sep, domain = email.strip().rpartition("@")
    if not sep or not local or not domain or "/" in domain or ":" in domain:
        raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, "not an email address")
    return domain.lower().rstrip(".")


def _ews_endpoint(server: str) -> str:
    """``https://<server>/EWS/Exchange.asmx`` from what a user typed as the server."""
    value = server.strip()
    if "://" in value:
        parts = urlsplit(value)
        if parts.path.strip("/"):
            return f"https://{parts.netloc}{parts.path}"
        value = parts.netloc
    value = value.strip("/")
    if not value or "/" in value or "@" in value or " " in value:
        raise ExchangeFailure(Diagnosis.UNREACHABLE, "not a server name")
    return f"https://{value}/{EWS_PATH}"


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _policy(config: ExchangeConfig) -> GuardPolicy:
    from .exchange_guard import GuardPolicy  # noqa: PLC0415

    return GuardPolicy.build(config.allow_networks, config.ca_bundle)


def _run_with_deadline(fn: Callable[[], T], deadline: float, what: str) -> T:
    """Run ``fn`` in a daemon thread (carrying our context); TIMEOUT if it is not done by ``deadline``."""
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    ctx = contextvars.copy_context()

    def run() -> None:
        try:
            box.put((True, ctx.run(fn)))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box.put((False, e))

    threading.Thread(target=run, name=f"exchange-{what}", daemon=True).start()
    try:
        ok, value = box.get(timeout=max(0.0, deadline - time.monotonic()) + 0.25)
    except queue.Empty:
        raise ExchangeFailure(Diagnosis.TIMEOUT, f"{what}: no verdict within the time budget") from None
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def _scheme_to_auth_type(schemes: tuple[str, ...]) -> str | None:
    if "ntlm" in schemes or "negotiate" in schemes and "ntlm" in schemes:
        return NTLM
    if "basic" in schemes:
        return BASIC
    if "digest" in schemes:
        return DIGEST
    return None


# ---------------------------------------------------------------- classification


def _transport_code(obs: Observation) -> Diagnosis | None:
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


def classify(exc: BaseException, obs: Observation, *, during: str) -> ExchangeFailure:
    """Map an exception (by type) plus what the adapter saw (HTTP statuses, challenges) to a verdict."""
    from exchangelib import errors as ex  # noqa: PLC0415

    from .exchange_guard import BlockedAddressError, ModernAuthHostError  # noqa: PLC0415

    kind = type(exc).__name__
    if isinstance(exc, ExchangeFailure):
        return exc
    if isinstance(exc, BlockedAddressError) or obs.blocked:
        return ExchangeFailure(Diagnosis.BLOCKED_ADDRESS, f"{during}: refused {', '.join(obs.blocked) or kind}")
    if isinstance(exc, ModernAuthHostError) or obs.modern_hosts or obs.bearer_only:
        return ExchangeFailure(Diagnosis.MODERN_AUTH_REQUIRED, f"{during}: server accepts only OAuth ({kind})")
    if 456 in obs.statuses or isinstance(exc, ex.ErrorAccountDisabled):
        return ExchangeFailure(Diagnosis.ACCOUNT_LOCKED, f"{during}: account locked or disabled ({kind})")
    if isinstance(exc, ex.UnauthorizedError):
        return ExchangeFailure(Diagnosis.AUTH_FAILED, f"{during}: credentials refused ({kind})")
    if isinstance(exc, ex.ErrorNonExistentMailbox | ex.ErrorMailRecipientNotFound):
        return ExchangeFailure(Diagnosis.MAILBOX_NOT_FOUND, f"{during}: no such mailbox ({kind})")
    if isinstance(exc, ex.ErrorAccessDenied | ex.ErrorImpersonateUserDenied | ex.ErrorItemNotFound):
        return ExchangeFailure(Diagnosis.ACCESS_DENIED, f"{during}: no rights on the mailbox ({kind})")
    transport = _transport_code(obs)
    if transport is not None:
        return ExchangeFailure(transport, f"{during}: {transport.value} ({kind})")
    if isinstance(exc, ex.AutoDiscoverFailed):
        return ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, f"{during}: {kind}")
    return ExchangeFailure(Diagnosis.UNREACHABLE, f"{during}: unexpected answer ({kind})")


# ---------------------------------------------------------------- unauthenticated probes


@dataclass(frozen=True)
class Probe:
    """One unauthenticated look at an endpoint."""

    url: str
    auth_type: str | None = None  # set when the endpoint is live
    failure: Diagnosis | None = None
    detail: str = ""

    @property
    def live(self) -> bool:
        return self.auth_type is not None


_PROBE_BODY = (
    '<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
    "<s:Body/></s:Envelope>"
)


def probe_endpoint(url: str, *, max_redirects: int = 2) -> Probe:
    """POST an empty SOAP envelope without credentials: which auth does the endpoint ask for?"""
    from .exchange_guard import GuardError, current, guarded_session  # noqa: PLC0415

    obs = current().observation
    try:
        with guarded_session() as session:
            response = session.post(
                url,
                data=_PROBE_BODY,
                headers={"Content-Type": "text/xml; charset=utf-8", "X-AnchorMailbox": "probe@example.invalid"},
                allow_redirects=False,
                timeout=30,
            )
            response.close()
    except (GuardError, OSError) as e:
        failure = _transport_code(obs) or (Diagnosis.BLOCKED_ADDRESS if isinstance(e, GuardError) else None)
        return Probe(url, failure=failure or Diagnosis.UNREACHABLE, detail=type(e).__name__)
    status = response.status_code
    if status in (301, 302, 303, 307, 308) and max_redirects > 0:
        location = response.headers.get("Location", "")
        if location.lower().startswith("https://"):
            return probe_endpoint(location, max_redirects=max_redirects - 1)
    if status == 200:
        return Probe(url, auth_type=NOAUTH)
    if status == 401:
        from .exchange_guard import _challenge_schemes  # noqa: PLC0415

        schemes = _challenge_schemes(response)
        auth = _scheme_to_auth_type(schemes)
        if auth:
            return Probe(url, auth_type=auth)
        if "bearer" in schemes:
            return Probe(url, failure=Diagnosis.MODERN_AUTH_REQUIRED, detail="401 offers only Bearer")
    return Probe(url, failure=Diagnosis.AUTODISCOVER_FAILED, detail=f"HTTP {status}")


def _http_redirect_target(domain: str) -> str | None:
    """Step 3: ``GET http://autodiscover.<domain>/...`` without credentials; the https Location, if any."""
    from .exchange_guard import GuardError, guarded_session  # noqa: PLC0415

    try:
        with guarded_session() as session:
            response = session.get(
                f"http://autodiscover.{domain}/{AUTODISCOVER_PATH}", allow_redirects=False, timeout=30
            )
            response.close()
    except (GuardError, OSError):
        return None
    location = response.headers.get("Location", "")
    if response.status_code in (301, 302) and location.lower().startswith("https://"):
        return location
    return None


def _srv_target(domain: str) -> str | None:
    """Step 4: the SRV record ``_autodiscover._tcp.<domain>`` (port 443 only, like exchangelib)."""
    import dns.exception  # noqa: PLC0415
    import dns.resolver  # noqa: PLC0415
    from exchangelib.autodiscover import Autodiscovery  # noqa: PLC0415

    from .exchange_guard import current  # noqa: PLC0415

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


def _candidate_jobs(domain: str) -> list[tuple[str, Callable[[], Probe | None]]]:
    def direct(url: str) -> Callable[[], Probe | None]:
        return lambda: probe_endpoint(url)

    def via_redirect() -> Probe | None:
        target = _http_redirect_target(domain)
        return probe_endpoint(target) if target else None

    def via_srv() -> Probe | None:
        target = _srv_target(domain)
        return probe_endpoint(f"https://{target}/{AUTODISCOVER_PATH}") if target else None

    return [
        ("domain", direct(f"https://{domain}/{AUTODISCOVER_PATH}")),
        ("autodiscover", direct(f"https://autodiscover.{domain}/{AUTODISCOVER_PATH}")),
        ("http_redirect", via_redirect),
        ("srv", via_srv),
    ]


@dataclass
class _Outcome:
    probe: Probe | None
    obs: Observation


def _probe_candidates(domain: str, policy: GuardPolicy, deadline: float, probe_timeout: float) -> list[_Outcome]:
    """Run the four autodiscover candidates concurrently; return outcomes in exchangelib's order.

    Stops waiting as soon as the earliest candidate that can still win has an answer (a live higher-priority
    candidate wins exactly as in exchangelib's sequential walk).
    """
    from .exchange_guard import Observation, guarded  # noqa: PLC0415

    jobs = _candidate_jobs(domain)
    results: list[queue.Queue[_Outcome]] = [queue.Queue(maxsize=1) for _ in jobs]
    probe_deadline = min(deadline, time.monotonic() + probe_timeout)

    def runner(index: int, job: Callable[[], Probe | None]) -> None:
        with guarded(policy, deadline=probe_deadline) as obs:
            try:
                probe = job()
            except Exception as e:  # noqa: BLE001 - a broken candidate is just a dead candidate
                probe = Probe("", failure=_transport_code(obs) or Diagnosis.AUTODISCOVER_FAILED, detail=type(e).__name__)
            results[index].put(_Outcome(probe, obs))

    for index, (name, job) in enumerate(jobs):
        threading.Thread(target=runner, args=(index, job), name=f"exchange-probe-{name}", daemon=True).start()
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


def _no_candidate_verdict(outcomes: list[_Outcome]) -> ExchangeFailure:
    """Why autodiscovery found nothing: the most telling failure among the candidates."""
    probes = [o.probe for o in outcomes if o.probe is not None]
    summary = "; ".join(f"{_host(p.url) or '?'}: {p.failure.value if p.failure else 'no'} {p.detail}" for p in probes)
    codes = {p.failure for p in probes} | {_transport_code(o.obs) for o in outcomes}
    for code in (Diagnosis.MODERN_AUTH_REQUIRED, Diagnosis.BLOCKED_ADDRESS):
        if code in codes:
            return ExchangeFailure(code, f"autodiscover: {summary}")
    # The bare domain is usually just a website: only the Exchange-specific candidates make a certificate or
    # timeout problem the verdict.
    specific = [o.probe for i, o in enumerate(outcomes) if i > 0 and o.probe is not None]
    for code in (Diagnosis.TLS_ERROR, Diagnosis.TIMEOUT):
        if any(p.failure == code for p in specific):
            return ExchangeFailure(code, f"autodiscover: {summary}")
    return ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, f"autodiscover: {summary or 'no candidate answered'}")


# ---------------------------------------------------------------- discover


def discover(email: str, password: str, username: str | None = None, *, config: ExchangeConfig) -> ExchangeSettings:
    """Find the EWS settings for ``email`` (autodiscover, SOAP). Raises ``ExchangeFailure``."""
    from .exchange_guard import is_microsoft_online  # noqa: PLC0415

    domain = _domain_of(email)
    if is_microsoft_online(domain):
        raise ExchangeFailure(Diagnosis.MODERN_AUTH_REQUIRED, f"{domain} is Exchange Online")
    configure_exchangelib()
    deadline = time.monotonic() + config.discovery_timeout
    login = (username or email).strip()
    try:
        return _run_with_deadline(
            lambda: _discover(email.strip(), password, login, domain, config, deadline), deadline, "discover"
        )
    finally:
        clear_exchangelib_caches()


def _discover(
    email: str, password: str, login: str, domain: str, config: ExchangeConfig, deadline: float
) -> ExchangeSettings:
    policy = _policy(config)
    probe_budget = max(1.0, config.discovery_timeout * 0.4)
    outcomes = _probe_candidates(domain, policy, deadline, probe_budget)
    chosen = next((o.probe for o in outcomes if o.probe is not None and o.probe.live), None)
    if chosen is None:
        raise _no_candidate_verdict(outcomes)
    user_settings = _get_user_settings(chosen, email, password, login, policy, deadline)
    ews_url = user_settings.get("external_ews_url") or user_settings.get("internal_ews_url")
    if not ews_url:
        raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, "autodiscover answered no EWS URL")
    return _settings_for(ews_url, login, policy, deadline, build=user_settings.get("cas_version"))


def _get_user_settings(
    probe: Probe, email: str, password: str, login: str, policy: GuardPolicy, deadline: float
) -> dict[str, str]:
    """The single authenticated autodiscover request (exchangelib's GetUserSettings)."""
    from exchangelib import Configuration, Credentials, FailFast  # noqa: PLC0415
    from exchangelib.autodiscover import AutodiscoverProtocol  # noqa: PLC0415

    from .exchange_guard import GuardedHTTPAdapter, guarded  # noqa: PLC0415

    protocol_cls = type(
        "GuardedAutodiscoverProtocol",
        (AutodiscoverProtocol,),
        {"HTTP_ADAPTER_CLS": GuardedHTTPAdapter, "TIMEOUT": max(1.0, deadline - time.monotonic())},
    )
    protocol = protocol_cls(
        config=Configuration(
            service_endpoint=probe.url,
            credentials=Credentials(login, password),
            auth_type=probe.auth_type,
            retry_policy=FailFast(),
        )
    )
    with guarded(policy, deadline=deadline) as obs:
        try:
            response = protocol.get_user_settings(user=email)
            response.raise_errors()
        except Exception as e:  # noqa: BLE001 - classified by type below
            raise classify(e, obs, during="autodiscover") from None
        finally:
            protocol.close()
    if response.redirect_address or response.redirect_url:
        raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, "autodiscover redirected; enter the settings manually")
    return dict(response.user_settings or {})


def _settings_for(
    ews_url: str, login: str, policy: GuardPolicy, deadline: float, build: str | None
) -> ExchangeSettings:
    """Check the EWS URL (name, guard, auth offered) without credentials and package the settings."""
    from .exchange_guard import guarded, is_microsoft_online  # noqa: PLC0415

    host = _host(ews_url)
    if not ews_url.lower().startswith("https://") or not host:
        raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, "autodiscover answered a non-HTTPS EWS URL")
    if is_microsoft_online(host):
        raise ExchangeFailure(Diagnosis.MODERN_AUTH_REQUIRED, f"EWS URL is on {host} (Exchange Online)")
    with guarded(policy, deadline=deadline):
        probe = probe_endpoint(ews_url, max_redirects=0)
    if not probe.live:
        code = probe.failure or Diagnosis.UNREACHABLE
        if code == Diagnosis.AUTODISCOVER_FAILED:
            code = Diagnosis.UNREACHABLE
        raise ExchangeFailure(code, f"EWS endpoint {host}: {probe.detail}")
    return ExchangeSettings(
        ews_url=ews_url, server=host, auth_type=probe.auth_type or NTLM, server_build=build, username=login
    )


# ---------------------------------------------------------------- verify


def verify(
    email: str,
    password: str,
    username: str,
    server: str | None = None,
    *,
    ews_url: str | None = None,
    auth_type: str | None = None,
    config: ExchangeConfig,
) -> VerificationResult:
    """Open the mailbox: inbox item count and server build. Raises ``ExchangeFailure``.

    Give ``ews_url`` + ``auth_type`` recorded from ``discover()`` to skip the probes, or a manual ``server``.
    """
    from .exchange_guard import is_microsoft_online  # noqa: PLC0415

    if not ews_url and not server:
        raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, "no server and no EWS URL given")
    endpoint = ews_url or _ews_endpoint(server or "")
    host = _host(endpoint)
    if not endpoint.lower().startswith("https://") or not host:
        raise ExchangeFailure(Diagnosis.BLOCKED_ADDRESS, "only https:// EWS URLs are accepted")
    if is_microsoft_online(host):
        raise ExchangeFailure(Diagnosis.MODERN_AUTH_REQUIRED, f"{host} is Exchange Online")
    _domain_of(email)
    configure_exchangelib()
    deadline = time.monotonic() + config.verify_timeout
    login = username.strip() or email.strip()
    try:
        return _run_with_deadline(
            lambda: _verify(email.strip(), password, login, endpoint, auth_type, config, deadline),
            deadline,
            "verify",
        )
    finally:
        clear_exchangelib_caches()


def _verify(
    email: str,
    password: str,
    login: str,
    endpoint: str,
    auth_type: str | None,
    config: ExchangeConfig,
    deadline: float,
) -> VerificationResult:
    from exchangelib import DELEGATE, UTC, Account, Configuration, Credentials, FailFast  # noqa: PLC0415
    from exchangelib.protocol import CachingProtocol, Protocol  # noqa: PLC0415

    from .exchange_guard import GuardedHTTPAdapter, guarded  # noqa: PLC0415

    policy = _policy(config)
    if auth_type is None:
        settings = _settings_for(endpoint, login, policy, deadline, build=None)
        auth_type = settings.auth_type
    protocol_config = Configuration(
        service_endpoint=endpoint,
        credentials=Credentials(login, password),
        auth_type=auth_type,
        retry_policy=FailFast(),
    )
    # Account() builds its protocol as Protocol(config=...), which returns the instance cached for
    # (endpoint, credentials). Creating our guarded subclass first puts it in that cache, so the Account uses
    # our adapter and time budget without touching exchangelib's process-wide class attributes.
    protocol_cls = type(
        "GuardedProtocol",
        (Protocol,),
        {"HTTP_ADAPTER_CLS": GuardedHTTPAdapter, "TIMEOUT": max(1.0, deadline - time.monotonic())},
    )
    protocol = protocol_cls(config=protocol_config)
    with guarded(policy, deadline=deadline) as obs:
        try:
            account = Account(
                primary_smtp_address=email,
                config=protocol_config,
                autodiscover=False,
                access_type=DELEGATE,
                default_timezone=UTC,
                locale="en_US",
            )
            if account.protocol is not protocol:
                raise ExchangeFailure(Diagnosis.UNREACHABLE, "internal: guarded protocol not in use")
            count = int(account.inbox.total_count or 0)
            build = account.version.build
        except Exception as e:  # noqa: BLE001 - classified by type below
            raise classify(e, obs, during="verify") from None
        finally:
            protocol.close()
            try:
                del CachingProtocol._protocol_cache[CachingProtocol._cache_key(protocol_config)]
            except KeyError:
                pass
    settings = ExchangeSettings(
        ews_url=endpoint,
        server=_host(endpoint),
        auth_type=auth_type,
        server_build=str(build) if build else None,
        username=login,
    )
    return VerificationResult(settings=settings, inbox_item_count=count, server_build=settings.server_build)
