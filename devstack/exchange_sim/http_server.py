"""The simulator's HTTP(S) listeners: autodiscover + EWS over TLS, the port-80 redirect, a black hole.

One HTTPS listener serves every simulated name (the Host header and SNI pick the behaviour). HTTP/1.1
keep-alive is on, because NTLM authenticates a *connection* (its three legs span requests on one socket);
pyspnego is the NTLM acceptor, reading passwords from the file named by ``NTLM_USER_FILE``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import spnego
from spnego.exceptions import SpnegoError

from . import soap
from .accounts import Account, LockoutPolicy, SignIn
from .scenarios import EXCHANGE_BUILD, Host, Mailbox, Unavailable

if TYPE_CHECKING:
    from collections.abc import Callable

Offline = str  # "refuse": connections refused (nothing listens); "503": IIS up, the application pool down

AUTODISCOVER_PATH = "/autodiscover/autodiscover.svc"
AUTODISCOVER_XML_PATH = "/autodiscover/autodiscover.xml"
AUTODISCOVER_V2_PREFIX = "/autodiscover/autodiscover.json/v1.0/"
EWS_PATH = "/ews/exchange.asmx"
OWA_PREFIX = "/owa"
# The Bearer challenge Exchange Server sends when hybrid modern auth is on (OAuth configured against Entra ID):
# quoted parameters, one of them holding commas (several trusted issuers).
BEARER_CHALLENGE = (
    'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
    'trusted_issuers="00000001-0000-0000-c000-000000000000@*,00000004-0000-0ff1-ce00-000000000000@*", '
    'token_types="app_asserted_user_v1 service_asserted_app_v1", '
    'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"'
)
WEBSITE = b"<!doctype html><html><head><title>Welcome</title></head><body><h1>Our company</h1></body></html>"


@dataclass
class SeenRequest:
    """One request the simulator received (for assertions: who talked to whom)."""

    host: str
    port_kind: str  # "https" | "http"
    method: str
    path: str
    operation: str | None = None
    auth_scheme: str | None = None
    status: int = 0


@dataclass(frozen=True)
class CredentialArrival:
    """A request that carried a credential (a Basic header or an NTLM AUTHENTICATE message), wherever it went:
    the record behind the password-destination rule."""

    host: str
    port_kind: str  # "https" | "http"
    path: str
    scheme: str  # "Basic" | "NTLM" | "Negotiate"
    login: str


@dataclass
class AuthAttempt:
    """One credential check: an NTLM AUTHENTICATE message or a Basic header."""

    login: str
    mailbox: str | None  # mailbox the login belongs to, if known
    scheme: str
    ok: bool


@dataclass
class World:
    """Everything the handlers need; shared by all connections."""

    hosts: dict[str, Host]
    mailboxes: dict[str, Mailbox]
    build: str = EXCHANGE_BUILD
    requests_seen: list[SeenRequest] = field(default_factory=list)
    auth_attempts: list[AuthAttempt] = field(default_factory=list)
    credentials_seen: list[CredentialArrival] = field(default_factory=list)
    busy_answered: set[str] = field(default_factory=set)  # mailboxes whose last answer was ServerBusy
    ews_busy_answered: set[str] = field(default_factory=set)  # mailboxes whose last GetFolder was throttled
    unavailable_answered: dict[str, int] = field(default_factory=dict)  # host -> 503s answered since reset
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.time
    # The mutable side (see accounts.py), changed by the simulator's controls while the servers run.
    accounts: dict[str, Account] = field(default_factory=dict)  # mailbox -> its AD account
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    offline: dict[str, Offline] = field(default_factory=dict)  # host -> how it is down

    def __post_init__(self) -> None:
        now = self.clock()
        for email, box in self.mailboxes.items():
            if email not in self.accounts:
                days = box.password_expires_days
                self.accounts[email] = Account(
                    password=box.password,
                    password_expires=None
                    if days is None
                    else float(int(now + days * 86400)),  # xs:dateTime: s
                    locked_forever=box.locked,
                )

    def sign_in(self, mailbox: str | None, password_ok: bool) -> SignIn:
        """The domain's verdict on a sign-in to ``mailbox``'s account (a login of no mailbox: the password)."""
        if mailbox is None:
            return "ok" if password_ok else "bad_password"
        with self.lock:
            return self.accounts[mailbox].sign_in(password_ok, self.clock(), self.lockout)

    def password_of(self, mailbox: str) -> str:
        with self.lock:
            return self.accounts[mailbox].password

    def mailbox_for_login(self, login: str) -> str | None:
        wanted = login.lower()
        for email, box in self.mailboxes.items():
            if any(wanted == name.lower() for name in box.logins):
                return email
        return None

    def canonical(self, address: str) -> str:
        """The mailbox an SMTP address (primary or proxy) belongs to."""
        for email, box in self.mailboxes.items():
            if address in box.aliases:
                return email
        return address

    def record_attempt(self, login: str, scheme: str, ok: bool) -> None:
        with self.lock:
            self.auth_attempts.append(AuthAttempt(login, self.mailbox_for_login(login), scheme, ok))


def _host_of(header: str | None) -> str:
    host = (header or "").strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    timeout = 30  # idle keep-alive connections are dropped after this
    server: _SimHTTPServer

    # per-connection NTLM state
    _ntlm_ctx: Any = None
    _identity: str | None = None
    _identity_version: int = 0  # the account's password_version when the connection signed in

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the simulator runs inside test processes

    @property
    def world(self) -> World:
        return self.server.world

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        # Recorded before the answer goes out: a client reading ``requests_seen`` right after its answer
        # arrived must see the status (set afterwards, it raced this thread).
        self._seen.status = status
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body:
            self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _begin(self, port_kind: str) -> None:
        auth = self.headers.get("Authorization") or ""
        self._seen = SeenRequest(
            host=_host_of(self.headers.get("Host")),
            port_kind=port_kind,
            method=self.command,
            path=self.path,
            auth_scheme=auth.split(" ", 1)[0] if auth else None,
        )
        with self.world.lock:
            self.world.requests_seen.append(self._seen)
        arrival = _credential_in(auth)
        if arrival is not None:
            scheme, login = arrival
            with self.world.lock:
                self.world.credentials_seen.append(
                    CredentialArrival(self._seen.host, port_kind, self.path.split("?", 1)[0], scheme, login)
                )

    def _send_page(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._seen.status = status  # before the answer goes out (see _send)
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _RedirectHandler(_Handler):
    """Port 80: the autodiscover redirect (step 3), nothing else."""

    def _any(self) -> None:
        self._begin("http")
        self._read_body()
        spec = self.world.hosts.get(self._seen.host)
        # Microsoft documents GET http://autodiscover.<domain>/autodiscover/autodiscover.xml; IIS redirects
        # the whole virtual directory.
        if spec and spec.http_redirect and self.path.lower().startswith("/autodiscover/"):
            self._send(302, headers={"Location": spec.http_redirect})
        else:
            self._send(404)

    do_GET = do_HEAD = do_POST = _any


class _ExchangeHandler(_Handler):
    """Port 443: SOAP autodiscover and EWS behind NTLM/Basic (or Bearer-only) authentication."""

    def _any(self) -> None:
        self._begin("https")
        body = self._read_body()
        spec = self.world.hosts.get(self._seen.host)
        path = self.path.split("?", 1)[0].lower()
        if spec is None:
            self._send(404)
            return
        offline = self.world.offline.get(self._seen.host)
        if offline is not None:
            self._send_down(offline)
            return
        if spec.https_redirect:  # every path moved (IIS HTTP Redirect on the site)
            self._send(302, headers={"Location": spec.https_redirect})
            return
        if spec.unavailable is not None and self._unavailable_now(spec.unavailable):
            self._send_unavailable(spec.unavailable)
            return
        if spec.autodiscover_v2 and path.startswith(AUTODISCOVER_V2_PREFIX):
            self._autodiscover_v2(path[len(AUTODISCOVER_V2_PREFIX) :])
            return
        if path == AUTODISCOVER_XML_PATH and spec.autodiscover:
            self._pox(spec)
            return
        if spec.ews and path.startswith(OWA_PREFIX):
            # Outlook on the web: forms-based sign-in, never HTTP authentication.
            self._send_page(302, b"", {"Location": f"https://{self._seen.host}/owa/auth/logon.aspx"})
            return
        serves = (path == AUTODISCOVER_PATH and spec.autodiscover) or (path == EWS_PATH and spec.ews)
        if not serves:
            if spec.website == "page":
                self._send_page(200, WEBSITE)  # a catch-all site: any path, any method
            elif spec.website == "redirect_www":
                self._send_page(301, b"", {"Location": f"https://www.{self._seen.host}/"})
            else:
                self._send(404)
            return
        request = soap.parse_request(body) if body else None
        self._seen.operation = request.operation if request else None
        login = self._authenticate(spec)
        if login is None:
            return  # a 401 (or the locked account's answer) went out
        mailbox = self.world.mailbox_for_login(login)
        if self.command != "POST" or request is None:
            self._send(200)
            return
        if path == EWS_PATH and mailbox and not self.world.mailboxes[mailbox].ews_enabled:
            # Set-CASMailbox -EwsEnabled $false: signed in, and refused by EWS for this mailbox.
            self._send_page(403, b"<html><body><h1>403 - Forbidden: Access is denied.</h1></body></html>")
            return
        if path == AUTODISCOVER_PATH:
            self._autodiscover(request)
        else:
            self._ews(request, login, mailbox)

    do_GET = do_HEAD = do_POST = _any

    def _send_down(self, how: Offline) -> None:
        """A server taken offline by the controls. "503": HTTP.sys answers for a stopped application pool (no
        Retry-After). "refuse": nothing listens any more (new connections go to a closed port, see
        ``ExchangeSimulator.port_for``); a connection opened before is closed without an answer."""
        if how == "503":
            body = b"<html><body><h1>Service Unavailable</h1><p>HTTP Error 503. The service is unavailable.</p></body></html>"
            self._send_page(503, body, {"Connection": "close"})
            self.close_connection = True
            return
        self._seen.status = 0
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _unavailable_now(self, unavailable: Unavailable) -> bool:
        """Whether this request gets the 503 (the first ``times`` requests since the last reset)."""
        host = self._seen.host
        with self.world.lock:
            answered = self.world.unavailable_answered.get(host, 0)
            if unavailable.times is not None and answered >= unavailable.times:
                return False
            self.world.unavailable_answered[host] = answered + 1
        return True

    def _send_unavailable(self, unavailable: Unavailable) -> None:
        """503 with Retry-After, as HTTP.sys or a draining load balancer answers, whatever the request (RFC 9110
        section 15.6.4; Retry-After: an HTTP-date or delta-seconds, section 10.2.3)."""
        from email.utils import formatdate

        if unavailable.http_date:
            retry_after = formatdate(time.time() + unavailable.retry_after, usegmt=True)
        else:
            retry_after = str(unavailable.retry_after)
        body = b"<html><body><h1>Service Unavailable</h1><p>HTTP Error 503. The service is unavailable.</p></body></html>"
        self._send_page(503, body, {"Retry-After": retry_after})

    # ------------------------------------------------------------ authentication

    def _challenge(self, spec: Host, ntlm_token: str | None = None, ntlm_scheme: str = "NTLM") -> None:
        values = []
        for scheme in spec.auth:
            if scheme == "NTLM":
                values += ["Negotiate", "NTLM"]
            elif scheme == "Negotiate":  # IIS with NTLM only as a provider of Negotiate
                values.append("Negotiate")
            elif scheme == "Basic":
                charset = ', charset="UTF-8"' if spec.basic_charset else ""  # RFC 7617 section 2.1
                values.append(f'Basic realm="{self._seen.host}"{charset}')
            else:
                values.append(BEARER_CHALLENGE)
        if ntlm_token:
            values = [f"{ntlm_scheme} {ntlm_token}"]
        self._seen.status = 401  # before the answer goes out (see _send)
        self.send_response(401)
        for value in dict.fromkeys(values):
            self.send_header("WWW-Authenticate", value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _authenticate(self, spec: Host) -> str | None:
        """The authenticated login, or None after answering 401."""
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "ntlm" and "NTLM" in spec.auth:
            return self._ntlm(spec, token.strip())
        if scheme == "negotiate" and ("NTLM" in spec.auth or "Negotiate" in spec.auth):
            return self._ntlm(spec, token.strip(), "Negotiate")  # raw NTLM inside Negotiate (MS-SPNG)
        if scheme == "basic" and "Basic" in spec.auth:
            return self._basic(spec, token.strip())
        if not header and self._identity:
            return self._still_signed_in(spec, self._identity)  # connection already authenticated by NTLM
        self._challenge(spec)
        return None

    def _still_signed_in(self, spec: Host, login: str) -> str | None:
        """A connection NTLM authenticated earlier: signed in still, unless the account changed since (a new
        password, a lockout, an expired password): the controls act at once, on open connections too."""
        mailbox = self.world.mailbox_for_login(login)
        if mailbox is not None:
            with self.world.lock:
                account = self.world.accounts[mailbox]
                now = self.world.clock()
                locked, stale = (
                    account.is_locked(now),
                    (account.password_version != self._identity_version or account.is_expired(now)),
                )
            if locked or stale:
                self._identity = None
                if locked:
                    self._send_locked(spec)
                else:
                    self._challenge(spec)
                return None
        return login

    def _verdict(self, spec: Host, login: str, scheme: str, password_ok: bool) -> str | None:
        """Record the attempt, ask the domain (lockout, expiry) and answer a refusal; the login when signed in."""
        self.world.record_attempt(login, scheme, password_ok)
        mailbox = self.world.mailbox_for_login(login)
        verdict = self.world.sign_in(mailbox, password_ok)
        if verdict == "locked":
            self._send_locked(spec)
            return None
        if verdict != "ok":  # a wrong password, or the right one expired: Windows refuses the logon, IIS 401s
            self._challenge(spec)
            return None
        if mailbox is not None:
            with self.world.lock:
                self._identity_version = self.world.accounts[mailbox].password_version
        return login

    def _send_locked(self, spec: Host) -> None:
        """A locked account: 456 (EWS Managed API's ``AccountIsLocked``), or 401 on a host playing IIS's answer."""
        if spec.locked_status == 401:
            self._challenge(spec)
        else:
            self._send(spec.locked_status)

    def _basic(self, spec: Host, token: str) -> str | None:
        """RFC 7617 section 2: base64 of user-id ":" password; section 2.1: in UTF-8 (the only charset a server may
        announce, and what browsers send without one). Bytes that are not UTF-8 are refused like a wrong password
        (the server cannot know whose they are)."""
        try:
            login, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            self._challenge(spec)
            return None
        email = self.world.mailbox_for_login(login)
        ok = email is not None and self.world.password_of(email) == password
        return self._verdict(spec, login, "Basic", ok)

    def _ntlm(self, spec: Host, token: str, scheme: str = "NTLM") -> str | None:
        try:
            raw = base64.b64decode(token)
        except binascii.Error:
            self._challenge(spec)
            return None
        message_type = int.from_bytes(raw[8:12], "little") if len(raw) >= 12 else 0
        if message_type == 1:
            self._identity = None
            self._ntlm_ctx = spnego.server(protocol="ntlm")
            out = self._ntlm_ctx.step(raw)
            if spec.netbios_domain:
                out = _announce_domain(self._ntlm_ctx, spec.netbios_domain)
            self._challenge(spec, base64.b64encode(out).decode(), scheme)
            return None
        if message_type == 3 and self._ntlm_ctx is not None:
            ctx, self._ntlm_ctx = self._ntlm_ctx, None
            login = _ntlm_login(raw)
            try:
                ctx.step(raw)
            except SpnegoError:
                return self._verdict(spec, login, "NTLM", password_ok=False)
            signed_in = self._verdict(spec, login, "NTLM", password_ok=True)
            self._identity = signed_in
            return signed_in
        self._challenge(spec)
        return None

    # ------------------------------------------------------------ SOAP

    def _build(self) -> str:
        spec = self.world.hosts.get(self._seen.host)
        return (spec.build if spec is not None else None) or self.world.build

    def _autodiscover(self, request: soap.SoapRequest) -> None:
        if request.operation != "GetUserSettings":
            self._send(400)
            return
        users: list[soap.UserAnswer] = []
        for email in soap.requested_mailboxes(request):
            box = self.world.mailboxes.get(email.lower())
            if box is None:
                users.append(soap.UserAnswer(email, error=("InvalidUser", f"Invalid user: '{email}'")))
                continue
            if box.autodiscover_error == "Garbled":
                self._send(200, b"<?xml version='1.0'?><s:Envelope><s:Body><Oops")
                return
            if box.autodiscover_error == "ServerBusy":
                # Busy every other time it is asked: a client that asks once more gets its answer.
                with self.world.lock:
                    busy = email.lower() not in self.world.busy_answered
                    (self.world.busy_answered.add if busy else self.world.busy_answered.discard)(
                        email.lower()
                    )
                if busy:
                    body = soap.user_settings_error(self._build(), "ServerBusy", "The server is too busy.")
                    self._send(200, body)
                    return
            elif box.autodiscover_error:  # InvalidRequest, InternalServerError: the Response's own ErrorCode
                body = soap.user_settings_error(self._build(), box.autodiscover_error, box.autodiscover_error)
                self._send(200, body)
                return
            if box.redirect_address:
                users.append(soap.UserAnswer(email, redirect=("RedirectAddress", box.redirect_address)))
            elif box.redirect_url:
                users.append(soap.UserAnswer(email, redirect=("RedirectUrl", box.redirect_url)))
            else:
                users.append(
                    soap.UserAnswer(email, _user_settings(email, box, soap.requested_settings(request)))
                )
        self._send(200, soap.user_settings_response(self._build(), users))

    def _pox(self, spec: Host) -> None:
        """The POX endpoint (Autodiscover.xml): behind the same authentication; we never expect a client here."""
        login = self._authenticate(spec)
        if login is None:
            return
        self._send(200, soap.pox_error("600", "Invalid Request"))

    def _autodiscover_v2(self, rest: str) -> None:
        """Autodiscover v2 (unauthenticated): ``/autodiscover/autodiscover.json/v1.0/{email}?Protocol=EWS``."""
        from urllib.parse import parse_qs, unquote, urlsplit

        email = unquote(rest.split("?", 1)[0]).lower()
        protocol = (parse_qs(urlsplit(self.path).query).get("Protocol") or [""])[0]
        box = self.world.mailboxes.get(email)
        if protocol.lower() != "ews" or box is None or not box.ews_url:
            body = b'{"ErrorCode":"InvalidUser","ErrorMessage":"The user is not found."}'
            status = 400 if protocol.lower() != "ews" else 404
        else:
            body = json.dumps({"Protocol": "EWS", "Url": box.ews_url}).encode()
            status = 200
        self._seen.status = status  # before the answer goes out (see _send)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _ews(self, request: soap.SoapRequest, login: str, own_mailbox: str | None) -> None:
        op = request.operation
        build = self._build()
        if op == "GetPasswordExpirationDate":
            self._password_expiration(request, own_mailbox, build)
        elif op == "GetFolder" and own_mailbox and self._throttled(own_mailbox):
            busy_ms = self.world.mailboxes[own_mailbox].ews_busy_ms or 0
            self._send(500, soap.server_busy_fault(busy_ms))
        elif op == "GetFolder":
            messages = [self._get_folder(f, own_mailbox) for f in soap.folder_requests(request)]
            self._send(200, soap.response_messages(op, build, messages))
        elif op == "ConvertId":
            # exchangelib's version probe sends a dummy id; a real server says it is malformed.
            message = soap.error_message(op, "ErrorInvalidIdMalformed", "Id is malformed.")
            self._send(200, soap.response_messages(op, build, [message]))
        elif op == "ResolveNames":
            message = soap.error_message(op, "ErrorNameResolutionNoResults", "No results were found.")
            self._send(200, soap.response_messages(op, build, [message]))
        else:
            message = soap.error_message(op, "ErrorInvalidOperation", f"{op} is not simulated.")
            self._send(200, soap.response_messages(op, build, [message]))

    def _password_expiration(self, request: soap.SoapRequest, own_mailbox: str | None, build: str) -> None:
        """MS-OXWSPED GetPasswordExpirationDate: the caller's own account's expiry (empty: never expires). A server
        older than Exchange 2010 SP2 has no such operation in its schema: HTTP 500, ErrorSchemaValidation."""
        if not soap.supports_password_expiration(build):
            violation = (
                f"The element 'Body' in namespace '{soap.SOAPNS}' has invalid child element "
                f"'GetPasswordExpirationDate' in namespace '{soap.MNS}'."
            )
            self._send(500, soap.schema_validation_fault(violation))
            return
        asked = soap.requested_password_mailbox(request)
        target = self.world.canonical(asked.lower()) if asked else own_mailbox
        if target is None or target not in self.world.mailboxes:
            text = f"No mailbox with such guid or SMTP address: {asked}"
            self._send(200, soap.password_expiration_error(build, "ErrorNonExistentMailbox", text))
            return
        if target != own_mailbox:
            text = "Access is denied. Check credentials and try again."
            self._send(200, soap.password_expiration_error(build, "ErrorAccessDenied", text))
            return
        with self.world.lock:
            expires = self.world.accounts[target].password_expires
        at = None if expires is None else dt.datetime.fromtimestamp(expires, dt.UTC)
        self._send(200, soap.password_expiration_response(build, at))

    def _throttled(self, mailbox: str) -> bool:
        """Throttled every other time GetFolder is asked (busy first), for a mailbox with ``ews_busy_ms``."""
        if self.world.mailboxes[mailbox].ews_busy_ms is None:
            return False
        with self.world.lock:
            busy = mailbox not in self.world.ews_busy_answered
            (self.world.ews_busy_answered.add if busy else self.world.ews_busy_answered.discard)(mailbox)
        return busy

    def _get_folder(self, req: soap.FolderRequest, own_mailbox: str | None) -> str:
        target = self.world.canonical((req.mailbox or own_mailbox or "").lower())
        box = self.world.mailboxes.get(target)
        if box is None:
            return soap.error_message(
                "GetFolder", "ErrorNonExistentMailbox", f"No mailbox with such guid or SMTP address: {target}"
            )
        if target != (own_mailbox or ""):
            return soap.error_message(
                "GetFolder", "ErrorAccessDenied", "Access is denied. Check credentials."
            )
        name = req.folder if req.distinguished else _folder_name(target, req.folder)
        total = box.inbox_count if name == "inbox" else 0
        return soap.success_message(
            "GetFolder", f"<m:Folders>{soap.folder_xml(target, name, total)}</m:Folders>"
        )


def _folder_name(email: str, fid: str) -> str:
    for name in ("root", "msgfolderroot", "inbox"):
        if soap.folder_id(email, name) == fid:
            return name
    return "unknown"


def _user_settings(email: str, box: Mailbox, wanted: list[str]) -> dict[str, str]:
    available = {
        "AutoDiscoverSMTPAddress": email,
        "UserDisplayName": box.display_name or email.split("@", maxsplit=1)[0].capitalize(),
        "ExternalEwsUrl": box.ews_url,
        "InternalEwsUrl": box.ews_url,
        "EwsSupportedSchemas": "Exchange2007, Exchange2007_SP1, Exchange2010, Exchange2010_SP1, "
        "Exchange2010_SP2, Exchange2013, Exchange2013_SP1, Exchange2016",
        "CasVersion": EXCHANGE_BUILD,
    }
    return {k: v for k, v in available.items() if k in wanted and v}


def _announce_domain(ctx: Any, domain: str) -> bytes:
    """Rewrite the CHALLENGE pyspnego's acceptor just made so that it names ``domain`` as a domain-joined
    Exchange server does (TargetName and MsvAvNbDomainName; pyspnego always says WORKSTATION). The acceptor
    keeps the rewritten message, so the AUTHENTICATE's MIC is checked against what the client really saw."""
    from spnego._ntlm_raw.messages import AvId, Challenge, NegotiateFlags, TargetInfo

    # pyspnego (pinned in requirements-dev.in) offers no public way to name the domain: its acceptor keeps
    # the CHALLENGE it sent in this private attribute, to check the AUTHENTICATE's MIC against it.
    old = getattr(ctx, "_temp_challenge", None)
    if not isinstance(old, Challenge):
        raise RuntimeError("pyspnego's NTLM acceptor changed: see the pyspnego pin in requirements-dev.in")
    info = TargetInfo()
    for key, value in (old.target_info or {}).items():
        info[key] = value
    info[AvId.nb_domain_name] = domain.upper()
    info[AvId.dns_domain_name] = f"{domain.lower()}.test"
    flags = (old.flags & ~NegotiateFlags.target_type_server) | NegotiateFlags.target_type_domain
    new = Challenge(
        flags, old.server_challenge, target_name=domain.upper(), target_info=info, version=old.version
    )
    ctx._temp_challenge = new
    return bytes(new.pack())


def _credential_in(header: str) -> tuple[str, str] | None:
    """(scheme, login) when an Authorization header carries a credential: Basic, or an NTLM AUTHENTICATE."""
    scheme, _, token = header.partition(" ")
    try:
        raw = base64.b64decode(token.strip())
    except (binascii.Error, ValueError):
        return None
    if scheme.lower() == "basic":
        return "Basic", raw.decode("utf-8", errors="replace").partition(":")[0]
    if (
        scheme.lower() in ("ntlm", "negotiate")
        and raw[:8] == b"NTLMSSP\x00"
        and raw[8:12] == b"\x03\x00\x00\x00"
    ):
        return scheme.capitalize() if scheme.lower() == "negotiate" else "NTLM", _ntlm_login(raw)
    return None


def _ntlm_login(raw: bytes) -> str:
    """'DOMAIN\\user' (or the bare user name) from an NTLM AUTHENTICATE message."""

    def field_at(offset: int) -> str:
        length = int.from_bytes(raw[offset : offset + 2], "little")
        start = int.from_bytes(raw[offset + 4 : offset + 8], "little")
        return raw[start : start + length].decode("utf-16-le", errors="replace")

    domain, user = field_at(28), field_at(36)
    return f"{domain}\\{user}" if domain else user


class _SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, handler: type[_Handler], world: World, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.world = world
        self.tls = tls

    def finish_request(self, request: Any, client_address: Any) -> None:
        # http.server writes the headers and the body of an answer separately: without TCP_NODELAY, Nagle holds
        # the body back until the client's delayed ACK (40 ms on Linux), a delay no real IIS adds to an answer.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # TLS handshake here, in the connection's own thread: a slow client never blocks accept().
        if self.tls is not None:
            request.settimeout(10)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients hang up mid-handshake all the time (TLS errors are a scenario)


def make_https_server(world: World, tls: ssl.SSLContext) -> _SimHTTPServer:
    return _SimHTTPServer(_ExchangeHandler, world, tls)


def make_http_server(world: World) -> _SimHTTPServer:
    return _SimHTTPServer(_RedirectHandler, world, None)


class BlackHole:
    """Accepts TCP connections and never answers (nor closes them) until stopped."""

    def __init__(self, on_accept: Callable[[], None] | None = None) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._on_accept = on_accept
        self._thread = threading.Thread(target=self._serve, name="exchange-sim-blackhole", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if ready:
                conn, _ = self._sock.accept()
                self._held.append(conn)
                if self._on_accept:
                    self._on_accept()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self._sock.close()


class ClosedPort:
    """A bound TCP port nobody listens on: connecting is refused, and no one else can take the port."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    def stop(self) -> None:
        self._sock.close()
