"""``ExchangeSimulator``: starts the CA, DNS, HTTPS/HTTP listeners and (optionally) in-process routing."""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
import threading
from pathlib import Path
from types import TracebackType

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
    ) -> None:
        self.hosts = dict(HOSTS if hosts is None else hosts)
        self.mailboxes = dict(MAILBOXES if mailboxes is None else mailboxes)
        self.scenarios = scenarios
        self._install_routing = install_routing
        self.world = World(hosts=self.hosts, mailboxes=self.mailboxes, build=EXCHANGE_BUILD)
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
        assert self._tmp is not None
        lines = []
        for box in self.mailboxes.values():
            for login in box.logins:
                domain, _, user = login.rpartition("\\")
                lines.append(f"{domain}:{user}:{box.password}")
        path = self._tmp / "ntlm_users"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        path.chmod(0o600)
        self._saved_ntlm_file = os.environ.get("NTLM_USER_FILE")
        os.environ["NTLM_USER_FILE"] = str(path)

    def port_for(self, name: str, port: int) -> int:
        """The simulator port that plays ``name:port``."""
        host = self.hosts.get(name)
        if host is None:
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
