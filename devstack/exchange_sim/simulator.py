"""``ExchangeSimulator``: starts the CA, DNS, HTTPS/HTTP listeners and (optionally) in-process routing."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from .accounts import AccountView, LockoutPolicy, utc
from .certs import ThrowAwayCA
from .dns_server import DNSServer, Zone
from .http_server import (
    AuthAttempt,
    BlackHole,
    ClosedPort,
    CredentialArrival,
    SeenRequest,
    World,
    make_http_server,
    make_https_server,
)
from .routing import ConnectRecord, Routing
from .scenarios import (
    EXCHANGE_BUILD,
    HOSTS,
    MAILBOXES,
    SCENARIOS,
    SILENT_ZONES,
    SRV_RECORDS,
    Host,
    Mailbox,
    Scenario,
)

WRONG_CERT_NAME = "www.unrelated-site.test"


class ExchangeSimulator:
    """A simulated on-premises Exchange world on 127.0.0.1.

    Usage::

        with ExchangeSimulator() as sim:      # routing installed in this process until exit
            sim.ca_bundle                     # PEM of the throw-away CA to trust
            sim.scenarios                     # the Scenario data
            sim.requests_seen / sim.auth_attempts / sim.connects / sim.dns_queries
    """

    def __init__(
        self,
        *,
        install_routing: bool = True,
        hosts: dict[str, Host] | None = None,
        mailboxes: dict[str, Mailbox] | None = None,
        scenarios: tuple[Scenario, ...] = SCENARIOS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hosts = dict(HOSTS if hosts is None else hosts)
        self.mailboxes = dict(MAILBOXES if mailboxes is None else mailboxes)
        self.scenarios = scenarios
        self._install_routing = install_routing
        self.world = World(hosts=self.hosts, mailboxes=self.mailboxes, build=EXCHANGE_BUILD, clock=clock)
        self.dns_queries: list[tuple[str, str]] = []
        self._tmp: Path | None = None
        self._threads: list[threading.Thread] = []
        self._saved_ntlm_file: str | None = None
        self.routing: Routing | None = None
        self.running = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> ExchangeSimulator:
        self._tmp = Path(tempfile.mkdtemp(prefix="exchange-sim-"))
        ca = ThrowAwayCA(self._tmp)
        self.ca_bundle = str(ca.ca_path)
        served = sorted(n for n, h in self.hosts.items() if h.https == "serve")
        good = ca.issue("server", served)
        wrong = ca.issue("wrong", [WRONG_CERT_NAME])
        self._write_ntlm_user_file()

        self._https = make_https_server(self.world, self._tls_context(good.cert_path, good.key_path, wrong))
        self._http = make_http_server(self.world)
        self._black_hole = BlackHole()
        self._closed = ClosedPort()
        zone = Zone(
            a_records={name: host.address for name, host in self.hosts.items()},
            srv_records=SRV_RECORDS,
            silent_zones=SILENT_ZONES,
        )
        self._dns = DNSServer(zone, on_query=lambda name, qtype: self.dns_queries.append((name, qtype)))
        for server, label in ((self._https, "https"), (self._http, "http")):
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"exchange-sim-{label}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self._black_hole.start()
        self._dns.start()
        self.routing = Routing(self._dns.port, self.port_for)
        self.running = True
        if self._install_routing:
            self.install_routing()
        return self

    def stop(self) -> None:
        if not self.running:
            return
        self.uninstall_routing()
        for server in (self._https, self._http):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=2)
        self._black_hole.stop()
        self._closed.stop()
        self._dns.stop()
        if self._saved_ntlm_file is None:
            os.environ.pop("NTLM_USER_FILE", None)
        else:
            os.environ["NTLM_USER_FILE"] = self._saved_ntlm_file
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self.running = False

    def __enter__(self) -> ExchangeSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def install_routing(self) -> None:
        """Route simulated names to this simulator inside this process (see routing.py)."""
        assert self.routing is not None, "start() the simulator first"
        self.routing.install()

    def uninstall_routing(self) -> None:
        if self.routing is not None:
            self.routing.uninstall()

    # ------------------------------------------------------------ wiring

    def _tls_context(self, cert: Path, key: Path, wrong: object) -> ssl.SSLContext:
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        base.load_cert_chain(cert, key)
        wrong_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        wrong_ctx.load_cert_chain(wrong.cert_path, wrong.key_path)  # type: ignore[attr-defined]
        wrong_names = {n for n, h in self.hosts.items() if h.https == "wrong_cert"}

        def pick(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            if server_name and server_name.lower() in wrong_names:
                sslobj.context = wrong_ctx

        base.sni_callback = pick
        return base

    def _write_ntlm_user_file(self) -> None:
        self._saved_ntlm_file = os.environ.get("NTLM_USER_FILE")
        self._rewrite_ntlm_user_file()

    def _rewrite_ntlm_user_file(self) -> None:
        """The NTLM acceptor's password file (pyspnego reads it at every AUTHENTICATE): the accounts' passwords
        now. Written aside and renamed, so a sign-in racing a change reads the old file or the new one whole."""
        assert self._tmp is not None
        lines = []
        with self.world.lock:
            for email, box in self.mailboxes.items():
                password = self.world.accounts[email].password
                for login in box.logins:
                    domain, _, user = login.rpartition("\\")
                    lines.append(f"{domain}:{user}:{password}")
        path, aside = self._tmp / "ntlm_users", self._tmp / "ntlm_users.new"
        aside.write_text("\n".join(lines) + "\n", encoding="utf-8")
        aside.chmod(0o600)
        aside.replace(path)
        os.environ["NTLM_USER_FILE"] = str(path)

    def port_for(self, name: str, port: int) -> int:
        """The simulator port that plays ``name:port``."""
        host = self.hosts.get(name)
        if host is None or self.world.offline.get(name) == "refuse":
            return self._closed.port
        if port == 443:
            return {
                "serve": self._https.server_address[1],
                "wrong_cert": self._https.server_address[1],
                "hang": self._black_hole.port,
            }.get(host.https, self._closed.port)
        if port == 80 and host.http_redirect:
            return self._http.server_address[1]
        return self._closed.port

    # ------------------------------------------------------------ observations

    @property
    def https_port(self) -> int:
        return int(self._https.server_address[1])

    @property
    def http_port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def dns_port(self) -> int:
        return self._dns.port

    @property
    def requests_seen(self) -> list[SeenRequest]:
        return self.world.requests_seen

    @property
    def credentials_seen(self) -> list[CredentialArrival]:
        """Every request that carried a credential (Basic, NTLM/Negotiate AUTHENTICATE), wherever it went."""
        return self.world.credentials_seen

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        return self.world.auth_attempts

    @property
    def connects(self) -> list[ConnectRecord]:
        return self.routing.connects if self.routing else []

    def attempts_for(self, mailbox: str) -> list[AuthAttempt]:
        return [a for a in self.auth_attempts if a.mailbox == mailbox.lower()]

    def reset_observations(self) -> None:
        with self.world.lock:
            self.world.requests_seen.clear()
            self.world.auth_attempts.clear()
            self.world.credentials_seen.clear()
            self.world.busy_answered.clear()
            self.world.ews_busy_answered.clear()
            self.world.unavailable_answered.clear()
        self.dns_queries.clear()
        if self.routing:
            self.routing.connects.clear()

    # ------------------------------------------------------------ controls (thread-safe, effective at once)

    def _mailbox(self, email: str) -> str:
        """The mailbox an address (primary or proxy, any case) names; KeyError for none."""
        address = self.world.canonical(email.strip().lower())
        if address not in self.mailboxes:
            raise KeyError(f"no simulated mailbox {email!r}")
        return address

    def set_password(self, email: str, new: str) -> None:
        """The owner (or IT) changed the password: the old one is refused from now on, on open connections too;
        the expiry moves a whole maximum password age ahead (unless it never expires)."""
        if not new:
            raise ValueError("a password cannot be empty")
        mailbox = self._mailbox(email)
        with self.world.lock:
            self.world.accounts[mailbox].change_password(new, self.world.clock())
        if self.running:
            self._rewrite_ntlm_user_file()

    def lock_account(self, email: str, until: dt.datetime | None = None) -> None:
        """AD locks the account: every sign-in is refused (HTTP 456, or 401 on a host playing IIS's answer) until
        ``until`` passes, or, without it, until ``unlock_account``."""
        mailbox = self._mailbox(email)
        with self.world.lock:
            account = self.world.accounts[mailbox]
            if until is None:
                account.locked_forever = True
            else:
                account.locked_until = until.timestamp()

    def unlock_account(self, email: str) -> None:
        """An administrator unlocks the account (the bad-password count goes back to 0)."""
        mailbox = self._mailbox(email)
        with self.world.lock:
            self.world.accounts[mailbox].unlock()

    def expire_password(self, email: str, at: dt.datetime | None) -> None:
        """The password expires at ``at`` (what GetPasswordExpirationDate answers); once it has passed, the right
        password is refused like a wrong one (401) without counting towards lockout. None: never expires."""
        mailbox = self._mailbox(email)
        with self.world.lock:
            self.world.accounts[mailbox].password_expires = None if at is None else float(int(at.timestamp()))

    def set_lockout_policy(
        self,
        threshold: int | None,
        *,
        window: dt.timedelta | None = None,
        duration: dt.timedelta | None = None,
    ) -> None:
        """The domain's lockout policy: ``threshold`` wrong passwords within ``window`` (default 30 min) lock the
        account for ``duration`` (default 30 min; ``dt.timedelta(0)``: until an administrator unlocks it).
        ``threshold`` None: never locked (the default)."""
        window_s = (window or dt.timedelta(minutes=30)).total_seconds()
        duration_s = (duration if duration is not None else dt.timedelta(minutes=30)).total_seconds()
        with self.world.lock:
            self.world.lockout = LockoutPolicy(threshold, window_s, duration_s or None)

    def _hosts_of(self, host_or_email: str) -> list[str]:
        if "@" not in host_or_email:
            name = host_or_email.strip().lower()
            if name not in self.hosts:
                raise KeyError(f"no simulated host {host_or_email!r}")
            return [name]
        box = self.mailboxes[self._mailbox(host_or_email)]
        host = urlsplit(box.ews_url).hostname if box.ews_url else None
        if host is None or host not in self.hosts:
            raise KeyError(f"{host_or_email}: its EWS server is not simulated")
        return [host]

    def take_offline(self, host_or_email: str, *, how: str = "refuse") -> list[str]:
        """The server (a host name, or the EWS server of a mailbox) goes down: ``how`` "refuse" (nothing listens:
        connections refused, open ones closed) or "503" (IIS answers every request 503). The hosts taken down."""
        if how not in ("refuse", "503"):
            raise ValueError("how: 'refuse' or '503'")
        hosts = self._hosts_of(host_or_email)
        with self.world.lock:
            for host in hosts:
                self.world.offline[host] = how
        return hosts

    def bring_online(self, host_or_email: str) -> list[str]:
        hosts = self._hosts_of(host_or_email)
        with self.world.lock:
            for host in hosts:
                self.world.offline.pop(host, None)
        return hosts

    def account(self, email: str) -> AccountView:
        """What the controls changed, for one mailbox (no password)."""
        mailbox = self._mailbox(email)
        box = self.mailboxes[mailbox]
        ews_host = urlsplit(box.ews_url).hostname if box.ews_url else None
        with self.world.lock:
            acct = self.world.accounts[mailbox]
            now = self.world.clock()
            locked = acct.is_locked(now)
            return AccountView(
                email=mailbox,
                locked=locked,
                locked_until=utc(acct.locked_until) if locked and not acct.locked_forever else None,
                bad_password_count=acct.bad_password_count,
                password_expires=utc(acct.password_expires),
                password_expired=acct.is_expired(now),
                password_changed=acct.password != box.password,
                offline_hosts=tuple(h for h in (ews_host,) if h and h in self.world.offline),
                ews_host=ews_host,
            )

    def accounts(self) -> list[AccountView]:
        """Every mailbox's state, in scenario order."""
        return [self.account(email) for email in self.mailboxes]

    def offline_hosts(self) -> dict[str, str]:
        with self.world.lock:
            return dict(self.world.offline)

    def reset_controls(self) -> None:
        """Back to the scenarios: passwords, expiries, locks, lockout policy, servers online."""
        now = self.world.clock()
        fresh = World(hosts=self.hosts, mailboxes=self.mailboxes, clock=lambda: now).accounts
        with self.world.lock:
            self.world.offline.clear()
            self.world.lockout = LockoutPolicy()
            for email, account in fresh.items():  # connections signed in before sign in again
                account.password_version = self.world.accounts[email].password_version + 1
            self.world.accounts.clear()
            self.world.accounts.update(fresh)
        if self.running:
            self._rewrite_ntlm_user_file()
