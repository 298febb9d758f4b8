"""SSRF guard and observer for every HTTP connection the Exchange code makes.

``GuardedHTTPAdapter`` (a requests ``HTTPAdapter``) is what exchangelib's protocols use
(``HTTP_ADAPTER_CLS``) and what our own probes mount. For each request it:

* refuses Exchange Online / Microsoft 365 host names before connecting (password sign-in cannot work there);
* allows plain ``http://`` only for an unauthenticated GET/HEAD (the autodiscover redirect probe): credentials
  only ever travel over HTTPS;
* resolves the host itself (bounded by the call's deadline), refuses the connection if *any*
  resolved address is not public (loopback, private, link-local incl. 169.254.169.254, CGNAT,
  unique-local, IPv4-mapped/NAT64/6to4 forms of those, 0.0.0.0/8, multicast, reserved) unless it is
  inside ``allow_networks``, connects to the checked address and checks the connected socket's peer
  again (so DNS rebinding cannot slip through);
* keeps certificate verification on (``verify=False`` is ignored), optionally trusting one extra CA bundle;
* ignores proxy settings from the environment (a proxy would hide the real peer);
* clamps every timeout to the call's remaining time budget;
* records what it saw (HTTP statuses, 401 challenge schemes, blocked hosts, transport failure kinds) in the
  current ``Observation``, so failures can be classified by type/status even where exchangelib wraps them.

Policy, deadline and observation travel in a ``ContextVar`` (copy the context into worker threads).
Outside a guarded call the strictest policy applies.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.ssl_match_hostname import CertificateError

from onboarding.exchange.trace import TraceRecorder, safe_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MICROSOFT_ONLINE_SUFFIXES = (
    "outlook.office365.com",
    "outlook.office.com",
    "outlook.com",
    "office365.com",
    "onmicrosoft.com",  # tenants' own domains, e.g. the hybrid routing address <tenant>.mail.onmicrosoft.com
)
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")


class GuardError(Exception):
    """Base of the guard's refusals. Not an OSError: no layer may mistake it for a network error."""


class BlockedAddressError(GuardError):
    """The peer is not a public address (or credentials would travel in clear text)."""


class ModernAuthHostError(GuardError):
    """The host is Exchange Online / Microsoft 365, which accepts only OAuth."""


def is_microsoft_online(host: str) -> bool:
    """True for Exchange Online host names (recognised by name, never contacted)."""
    name = host.strip().strip("[]").lower().rstrip(".")
    return any(name == s or name.endswith("." + s) for s in MICROSOFT_ONLINE_SUFFIXES)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def is_public(ip: IPAddress) -> bool:
    """A globally routable unicast address (and, for IPv6 wrappers, the IPv4 inside is too)."""
    inner = _embedded_ipv4(ip)
    if inner is not None and not is_public(inner):
        return False
    if isinstance(ip, ipaddress.IPv4Address) and (ip in _CGNAT or ip.packed[0] == 0):
        return False
    return bool(
        ip.is_global
        and not ip.is_multicast
        and not ip.is_reserved
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_unspecified
        and not (
            isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
        )  # fec0::/10, deprecated, not global
    )


@dataclass(frozen=True)
class GuardPolicy:
    allow_networks: tuple[IPNetwork, ...] = ()
    ca_bundle: str | None = None

    @classmethod
    def build(cls, allow_networks: tuple[str, ...] = (), ca_bundle: str | None = None) -> GuardPolicy:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks), ca_bundle)

    def allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        candidates = [ip]
        inner = _embedded_ipv4(ip)
        if inner is not None:
            candidates.append(inner)
        for net in self.allow_networks:
            if any(c.version == net.version and c in net for c in candidates):
                return True
        return is_public(ip)


@dataclass
class Observation:
    """What the adapter saw during one probe or call."""

    statuses: list[int] = field(default_factory=list)
    challenges: list[tuple[str, ...]] = field(default_factory=list)  # schemes offered per 401, lower-case
    blocked: list[str] = field(default_factory=list)  # "host (reason)"
    modern_hosts: list[str] = field(default_factory=list)
    transport: list[str] = field(default_factory=list)  # "tls" | "timeout" | "unreachable"
    ntlm_domain: str | None = None  # the NetBIOS domain an NTLM CHALLENGE named

    @property
    def bearer_only(self) -> bool:
        return any(c and all(s == "bearer" for s in c) for c in self.challenges)


@dataclass
class GuardContext:
    policy: GuardPolicy
    observation: Observation
    deadline: float | None = None  # time.monotonic() value
    request_timeout: float | None = None
    trace: TraceRecorder | None = None  # the IT admin's trace: DNS, TCP, TLS and HTTP steps land here
    # The connections one discovery or verification shares (``guarded_session`` and exchangelib's sessions
    # mount it): the unauthenticated probe's connection carries the authenticated request that follows.
    connections: GuardedHTTPAdapter | None = None

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


_CURRENT: contextvars.ContextVar[GuardContext | None] = contextvars.ContextVar("exchange_guard", default=None)


def current() -> GuardContext:
    ctx = _CURRENT.get()
    return ctx if ctx is not None else GuardContext(GuardPolicy(), Observation())


@contextmanager
def guarded(
    policy: GuardPolicy,
    deadline: float | None = None,
    request_timeout: float | None = None,
    trace: TraceRecorder | None = None,
    connections: GuardedHTTPAdapter | None = None,
) -> Iterator[Observation]:
    """Run a block under ``policy``; yields the block's fresh ``Observation``. Steps go to ``trace`` and
    connections come from ``connections`` (if given, else the enclosing block's)."""
    outer = _CURRENT.get()
    if trace is None and outer is not None:
        trace = outer.trace
    if connections is None and outer is not None:
        connections = outer.connections
    ctx = GuardContext(policy, Observation(), deadline, request_timeout, trace, connections)
    token = _CURRENT.set(ctx)
    try:
        yield ctx.observation
    finally:
        _CURRENT.reset(token)


# ---------------------------------------------------------------- connections


def _resolve(host: str, port: int, timeout: float | None) -> list[tuple[Any, ...]]:
    """getaddrinfo bounded by ``timeout`` (a silent DNS server must not outlive the call's budget)."""
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.extend(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except BaseException as e:
            error.append(e)

    worker = threading.Thread(target=run, name="exchange-guard-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"resolving {host} took longer than {timeout} s")
    if error:
        raise error[0]
    return result


def _numeric_timeout(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


class _GuardedConnectionMixin:
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        ctx = current()
        host = self.host.strip("[]")
        timeout = _numeric_timeout(self.timeout)
        remaining = ctx.remaining()
        if remaining is not None:
            timeout = max(0.01, min(timeout if timeout is not None else remaining, remaining))
        started = time.monotonic()
        trace = ctx.trace
        try:
            infos = _resolve(host, self.port, timeout)
        except socket.gaierror as e:
            if trace:
                trace.add("dns", host=host, result=f"no answer ({e.strerror or e})", started=started)
            # EAI_AGAIN: the DNS server did not answer in time (as opposed to "no such name").
            ctx.observation.transport.append("timeout" if e.errno == socket.EAI_AGAIN else "unreachable")
            raise NameResolutionError(self.host, self, e) from e  # type: ignore[arg-type]
        except TimeoutError as e:
            ctx.observation.transport.append("timeout")
            if trace:
                trace.add("dns", host=host, result="timed out", started=started)
            raise ConnectTimeoutError(self, f"DNS lookup of {host} timed out") from e
        if trace:
            addresses = tuple(dict.fromkeys(str(i[4][0]) for i in infos))
            trace.add("dns", host=host, addresses=addresses, started=started)
        if not infos:
            ctx.observation.transport.append("unreachable")
            raise NewConnectionError(self, f"{host} has no address")  # type: ignore[arg-type]
        for info in infos:
            address = str(info[4][0])
            if not ctx.policy.allows(address):
                ctx.observation.blocked.append(f"{host} ({address})")
                if trace:
                    trace.add("tcp", host=host, addresses=(address,), result="refused: not a public address")
                raise BlockedAddressError(f"{host} resolves to a non-public address")
        family, socktype, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, socktype, proto)
        started = time.monotonic()
        try:
            for opt in self.socket_options or ():
                sock.setsockopt(*opt)
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            peer = str(sock.getpeername()[0])
        except TimeoutError as e:
            sock.close()
            ctx.observation.transport.append("timeout")
            if trace:
                trace.add("tcp", host=host, result=f"port {self.port}: timed out", started=started)
            raise ConnectTimeoutError(self, f"Connection to {host} timed out") from e
        except OSError as e:
            sock.close()
            ctx.observation.transport.append("unreachable")
            if trace:
                trace.add(
                    "tcp",
                    host=host,
                    result=f"port {self.port}: {e.strerror or type(e).__name__}",
                    started=started,
                )
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e  # type: ignore[arg-type]
        if trace:
            trace.add(
                "tcp", host=host, addresses=(peer,), result=f"port {self.port}: connected", started=started
            )
        if not ctx.policy.allows(peer):
            sock.close()
            ctx.observation.blocked.append(f"{host} (peer {peer})")
            raise BlockedAddressError(f"{host}: connected peer is not a public address")
        return sock


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    def connect(self) -> None:
        started = time.monotonic()
        try:
            super().connect()
        except Exception as e:
            trace = current().trace
            if trace and isinstance(e, ssl.SSLError | CertificateError):
                trace.add("tls", host=self.host, result=f"failed: {_tls_reason(e)}", started=started)
            raise
        trace = current().trace
        if trace and self.sock is not None:
            trace.add(
                "tls", host=self.host, tls=_certificate_summary(self.sock), result="ok", started=started
            )


def _tls_reason(error: BaseException) -> str:
    reason = getattr(error, "verify_message", None) or getattr(error, "reason", None) or str(error)
    return str(reason)[:200]


def _certificate_summary(sock: Any) -> tuple[str, str, str]:
    """(subject CN, issuer CN, notAfter) of the peer's certificate; names matched (the handshake checked)."""
    try:
        cert = sock.getpeercert() or {}
    except (AttributeError, ValueError, OSError):
        return ("?", "?", "?")

    def common_name(field: Any) -> str:
        for rdn in field or ():
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return "?"

    names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    subject = common_name(cert.get("subject"))
    if names:
        subject += f" [names: {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}]"
    return (subject, common_name(cert.get("issuer")), str(cert.get("notAfter", "?")))


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


# ---------------------------------------------------------------- CA bundle

_BUNDLE_LOCK = threading.Lock()


def combined_ca_bundle(base: str, extra: str) -> str:
    """A PEM file holding ``base`` + ``extra`` (written once per content into the temp dir, e.g. /tmp)."""
    return _combined_ca_bundle(base, extra, _stamp(base), _stamp(extra))


def _stamp(path: str) -> tuple[int, int]:
    """What makes a cached file-derived value stale: the file's modification time and size."""
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=8)
def _combined_ca_bundle(base: str, extra: str, *stamps: tuple[int, int]) -> str:
    data = Path(base).read_bytes() + b"\n" + Path(extra).read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"exchange-ca-{digest}.pem"
    with _BUNDLE_LOCK:
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
    return str(path)


def _default_ca_bundle() -> str:
    return requests.utils.DEFAULT_CA_BUNDLE_PATH


_CONTEXT_LOCK = threading.Lock()


def _verifying_context(ca_bundle: str, stamp: tuple[int, int]) -> ssl.SSLContext:
    """``_new_verifying_context`` once per bundle, even when the concurrent probes all ask at once (the
    context is part of the connection pool's key: one context, one pool per host)."""
    with _CONTEXT_LOCK:
        return _new_verifying_context(ca_bundle, stamp)


@functools.lru_cache(maxsize=8)
def _new_verifying_context(ca_bundle: str, stamp: tuple[int, int]) -> ssl.SSLContext:
    """One certificate-verifying TLS context per CA bundle, shared by every connection of the process.

    urllib3 would otherwise build a context and load the bundle (about 150 certificates: the costliest part of
    a handshake) for each new connection. Verification is unchanged: certificates required, host names matched
    by urllib3 as before."""
    from urllib3.util.ssl_ import create_urllib3_context

    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_verify_locations(cafile=ca_bundle)
    return context


# ---------------------------------------------------------------- adapter


def _content_kind(response: requests.Response) -> str:
    return (response.headers.get("Content-Type") or "no content").split(";", 1)[0].strip()


def _challenge_schemes(response: requests.Response) -> tuple[str, ...]:
    from onboarding.exchange.auth import parse_challenges, schemes

    raw = response.raw.headers.getlist("WWW-Authenticate") if response.raw is not None else []
    if not raw and response.headers.get("WWW-Authenticate"):
        raw = [response.headers["WWW-Authenticate"]]
    return schemes(parse_challenges(raw))


class GuardedHTTPAdapter(requests.adapters.HTTPAdapter):
    """See the module docstring."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[Any, Any]:
        """As requests does, but HTTPS pools verify with the process's cached context for that CA bundle (the
        customisation requests documents for this method) instead of loading the bundle per connection."""
        attributes: tuple[Any, Any] = super().build_connection_pool_key_attributes(request, verify, cert)
        host_params, pool_kwargs = attributes
        ca_bundle = pool_kwargs.get("ca_certs")
        if (
            host_params.get("scheme") == "https"
            and ca_bundle
            and pool_kwargs.get("cert_reqs") == "CERT_REQUIRED"
        ):
            del pool_kwargs["ca_certs"]
            pool_kwargs["ssl_context"] = _verifying_context(ca_bundle, _stamp(ca_bundle))
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """As requests does; a pool verifying with our cached context (above) must not load the bundle again
        into it for every connection (requests names the bundle on the pool as well)."""
        super().cert_verify(conn, url, verify, cert)
        if conn.conn_kw.get("ssl_context") is not None and conn.cert_reqs == "CERT_REQUIRED":
            conn.ca_certs = conn.ca_cert_dir = None

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        ctx = current()
        url = urlsplit(request.url or "")
        host = url.hostname or ""
        if is_microsoft_online(host):
            ctx.observation.modern_hosts.append(host)
            raise ModernAuthHostError(f"{host} is Exchange Online")
        if url.scheme != "https":
            clear_text_ok = (
                url.scheme == "http"
                and request.method in ("GET", "HEAD")
                and "Authorization" not in request.headers
                and not request.body
            )
            if not clear_text_ok:
                ctx.observation.blocked.append(f"{host} (clear-text {url.scheme})")
                raise BlockedAddressError("credentials and SOAP requests only travel over HTTPS")
        timeout = self._clamp(ctx, timeout)
        started = time.monotonic()
        try:
            response = super().send(
                request,
                stream=stream,
                timeout=timeout,
                verify=self._verify(ctx, verify),
                cert=cert,
                proxies={},
            )
        except requests.exceptions.SSLError:
            ctx.observation.transport.append("tls")
            self._trace(ctx, request, started, result="TLS failed")
            raise
        except requests.exceptions.Timeout:
            ctx.observation.transport.append("timeout")
            self._trace(ctx, request, started, result="no answer in time")
            raise
        except requests.exceptions.ConnectionError:
            if not ctx.observation.transport:
                ctx.observation.transport.append("unreachable")
            self._trace(ctx, request, started, result="connection failed")
            raise
        ctx.observation.statuses.append(response.status_code)
        schemes: tuple[str, ...] = ()
        if response.status_code == 401:
            schemes = _challenge_schemes(response)
            ctx.observation.challenges.append(schemes)
        location = response.headers.get("Location") if response.is_redirect else None
        self._trace(
            ctx,
            request,
            started,
            status=response.status_code,
            schemes=schemes,
            result=f"redirect to {safe_url(location)}" if location else _content_kind(response),
        )
        return response

    @staticmethod
    def _trace(
        ctx: GuardContext,
        request: requests.PreparedRequest,
        started: float,
        *,
        status: int | None = None,
        schemes: tuple[str, ...] = (),
        result: str | None = None,
    ) -> None:
        if ctx.trace is None:
            return
        auth = (request.headers.get("Authorization") or "").split(" ", 1)[0]
        what = f"{request.method} {'with ' + auth + ' credentials' if auth else 'without credentials'}"
        ctx.trace.add(
            "http",
            url=request.url or "",
            status=status,
            schemes=schemes,
            result=f"{what}; {result}" if result else what,
            started=started,
        )

    @staticmethod
    def _clamp(ctx: GuardContext, timeout: Any) -> Any:
        limits = [t for t in (ctx.request_timeout, ctx.remaining()) if t is not None]
        if not limits:
            return timeout
        limit = max(0.01, min(limits))
        if limit <= 0.01:
            ctx.observation.transport.append("timeout")
            raise requests.exceptions.ConnectTimeout("the call's time budget is spent")
        if isinstance(timeout, tuple):
            return tuple(limit if t is None else min(float(t), limit) for t in timeout)
        if isinstance(timeout, int | float):
            return min(float(timeout), limit)
        return limit

    @staticmethod
    def _verify(ctx: GuardContext, verify: bool | str) -> str | bool:
        base = verify if isinstance(verify, str) else _default_ca_bundle()
        if ctx.policy.ca_bundle:
            return combined_ca_bundle(base, ctx.policy.ca_bundle)
        return base if isinstance(verify, str) else True


class _GuardedSession(requests.Session):
    """A session on the guard's adapter; closing it leaves the block's shared connections to their owner."""

    shared: GuardedHTTPAdapter | None = None

    def close(self) -> None:
        for adapter in self.adapters.values():
            if adapter is not self.shared:
                adapter.close()


def guarded_session() -> requests.Session:
    """A plain requests session whose every connection goes through the guard (the block's shared
    connections, if it has them)."""
    session = _GuardedSession()
    session.trust_env = False
    session.shared = current().connections
    adapter = session.shared or GuardedHTTPAdapter(max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def share_connections(session: requests.Session) -> requests.Session:
    """Make an exchangelib session like ours: no settings from the environment (proxies, CA bundle: the
    guard's policy decides), and the block's shared connections (if any) mounted. Closing that session (the
    protocol's ``close()``, right after its authenticated requests) closes them: a connection IIS authenticated
    as the owner is never handed to a later unauthenticated probe."""
    session.trust_env = False
    shared = current().connections
    if shared is not None:
        for prefix in list(session.adapters):  # exchangelib mounts its adapter on the endpoint's own prefix
            session.mount(prefix, shared)
    return session
