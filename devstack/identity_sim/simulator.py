"""``IdentitySimulator``: the identity platform and Microsoft Graph, each on its own HTTPS port on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote_plus

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from devstack.exchange_sim.certs import ThrowAwayCA

from .graph import Graph
from .keys import SigningKey
from .platform import IdentityPlatform
from .scenarios import SCENARIOS_FILE, Behaviour, User, World, load
from .state import SEEN_KEY, RegisteredApp, SeenRequest, State


@dataclass(frozen=True)
class UserView:
    """One user as the controls left them (no secrets)."""

    address: str
    disabled: bool
    locked: bool
    outage: bool  # the token endpoint is down for this user (or for everyone)
    refresh_tokens: int  # issued and still working
    revoked_refresh_tokens: int
    consented: bool  # has consented to some app


DEFAULT_CLIENT_ID = "5d3c7f1a-9b2e-4c8d-a6f0-1e2b3c4d5e6f"


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return  # the simulator runs inside test processes


class IdentitySimulator:
    """Microsoft's identity platform (Entra ID v2.0 endpoints) and Microsoft Graph on 127.0.0.1.

    Usage::

        with IdentitySimulator(redirect_uris=["https://127.0.0.1:3000/callback"]) as sim:
            sim.authority_host  # M365_AUTHORITY_HOST, e.g. https://127.0.0.1:53211
            sim.graph_base_url  # GRAPH_BASE_URL
            sim.ca_bundle  # PEM of the throw-away CA both listeners' certificate chains to
            sim.client_id, sim.client_secret  # the registered app
            sim.users["mia@m365.test"].password
            sim.requests_seen  # [SeenRequest(service, method, path, status, password, code, bearer, ...)]
    """

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str | None = None,
        redirect_uris: Iterable[str] = (),
        app_name: str = "Mailbox Onboarding",
        scenarios: Path = SCENARIOS_FILE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.world: World = load(scenarios)
        self.state = State(world=self.world, clock=clock)
        self.app = RegisteredApp(
            client_id=client_id,
            client_secret=client_secret or State.new_id(),
            redirect_uris=tuple(redirect_uris),
            display_name=app_name,
        )
        self.state.apps[client_id] = self.app
        self._stopping = threading.Event()
        self._key = SigningKey()
        self.platform = IdentityPlatform(self.state, self._key, self._stopping)
        self.graph = Graph(self.state, self._key)
        self._servers: list[BaseWSGIServer] = []
        self._threads: list[threading.Thread] = []
        self._tmp: Path | None = None
        self.running = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> IdentitySimulator:
        self._tmp = Path(tempfile.mkdtemp(prefix="identity-sim-"))
        ca = ThrowAwayCA(self._tmp)
        self.ca_bundle = str(ca.ca_path)
        issued = ca.issue("server", ["127.0.0.1", "localhost"])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(issued.cert_path, issued.key_path)
        for service, handler in (("login", self.platform.dispatch), ("graph", self.graph.dispatch)):
            server = make_server(
                "127.0.0.1", 0, self._wsgi(service, handler), threaded=True, ssl_context=context,
                request_handler=_QuietHandler,
            )  # fmt: skip
            thread = threading.Thread(
                target=server.serve_forever, name=f"identity-sim-{service}", daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.platform.base_url = self.authority_host
        self.graph.base_url = self.graph_base_url
        self.running = True
        return self

    def stop(self) -> None:
        if not self.running:
            return
        self._stopping.set()  # releases requests held by ``token_timeout``
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self.running = False

    def __enter__(self) -> IdentitySimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ configuration

    def register_app(
        self, *, client_id: str, client_secret: str, redirect_uris: Iterable[str]
    ) -> RegisteredApp:
        """Register (or replace) an app, e.g. once the local stack knows its secret and public URL. It becomes
        ``sim.app`` (what ``client_id``, ``client_secret`` and ``environment()`` report)."""
        app = RegisteredApp(client_id, client_secret, tuple(redirect_uris), self.app.display_name)
        with self.state.lock:
            self.state.apps[client_id] = app
        self.app = app
        return app

    def environment(self, *, tenant: str = "organizations") -> dict[str, str]:
        """The settings that point production code at this simulator (the client secret goes elsewhere)."""
        return {
            "M365_AUTHORITY_HOST": self.authority_host,
            "M365_TENANT": tenant,
            "M365_CLIENT_ID": self.app.client_id,
            "GRAPH_BASE_URL": self.graph_base_url,
            "M365_CA_BUNDLE": self.ca_bundle,
        }

    def browser_app(self, public_url: str) -> Callable[..., Any]:
        """The sign-in pages as a WSGI app, for a server that mounts it at `public_url` (its origin and
        path): the discovery document then sends browsers there, and the pages post back under it."""
        self.platform.browser_base_url = public_url.rstrip("/")
        return self._wsgi("login", self.platform.dispatch)

    # ------------------------------------------------------------ observations

    @property
    def client_id(self) -> str:
        return self.app.client_id

    @property
    def client_secret(self) -> str:
        return self.app.client_secret

    @property
    def authority_host(self) -> str:
        return f"https://127.0.0.1:{self._servers[0].server_port}"

    base_url = authority_host  # the identity platform's base URL (what the contract calls it)

    @property
    def graph_base_url(self) -> str:
        return f"https://127.0.0.1:{self._servers[1].server_port}"

    def authority(self, tenant: str = "organizations") -> str:
        return f"{self.authority_host}/{tenant}"

    @property
    def users(self) -> dict[str, User]:
        return self.world.users

    @property
    def requests_seen(self) -> list[SeenRequest]:
        with self.state.lock:
            return list(self.state.requests_seen)

    def reset_observations(self) -> None:
        """Forget requests, sessions, consents and throttling state (apps and issued tokens stay)."""
        with self.state.lock:
            self.state.requests_seen.clear()
            self.state.sessions.clear()
            self.state.consents.clear()
            self.state.admin_consents.clear()
            self.state.graph_throttled.clear()

    def revoke_refresh_tokens(self, address: str) -> None:
        """What a password reset or an admin's "revoke sessions" (Revoke-MgUserSignInSession) does: the user's
        refresh tokens stop working (AADSTS50173, ``invalid_grant``); a new sign-in issues working ones."""
        user = self._user(address)
        with self.state.lock:
            for grant in self.state.grants.values():
                if grant.user.address == user.address:
                    grant.revoked = True
            for sid in [sid for sid, who in self.state.sessions.items() if who == user.address]:
                del self.state.sessions[sid]  # the browser's session goes too: the next sign-in asks again

    def _user(self, address: str) -> User:
        user = self.state.world.user(address)
        if user is None:
            raise KeyError(f"no simulated user {address!r}")
        return user

    def disable_user(self, address: str, disabled: bool = True) -> None:
        """An admin blocks sign-in (accountEnabled false): refreshes get AADSTS50057 (``invalid_grant``), a
        sign-in ``access_denied`` AADSTS50057. ``disabled=False`` enables the account again."""
        user = self._user(address)
        with self.state.lock:
            (self.state.disabled.add if disabled else self.state.disabled.discard)(user.address)

    def lock_user(self, address: str, locked: bool = True) -> None:
        """Smart Lockout locks the account: refreshes get AADSTS50053 (``invalid_grant``), the sign-in page
        refuses every password. ``locked=False`` unlocks it."""
        user = self._user(address)
        with self.state.lock:
            (self.state.locked.add if locked else self.state.locked.discard)(user.address)

    def withdraw_consent(self, address: str, client_id: str | None = None) -> None:
        """The user removes the app from their apps (its delegated permission grant is deleted): refreshes get
        AADSTS65001 ``invalid_grant`` / ``consent_required``, and the next sign-in shows the consent page."""
        user = self._user(address)
        client = client_id or self.app.client_id
        with self.state.lock:
            self.state.consents.pop((user.address, client), None)
            for grant in self.state.grants.values():
                if grant.user.address == user.address and grant.app.client_id == client:
                    grant.consent_withdrawn = True

    def set_outage(self, on: bool = True, *, address: str | None = None) -> None:
        """The token endpoint answers HTTP 503 ``temporarily_unavailable`` (AADSTS90033): for everyone, or
        (``address``) for that user's refresh tokens only. ``on=False`` ends it."""
        key = None if address is None else self._user(address).address
        with self.state.lock:
            (self.state.outage.add if on else self.state.outage.discard)(key)

    def user_state(self, address: str) -> UserView:
        """What the controls changed for one user (no secrets)."""
        user = self._user(address)
        with self.state.lock:
            grants = [g for g in self.state.grants.values() if g.user.address == user.address]
            return UserView(
                address=user.address,
                disabled=user.address in self.state.disabled or user.behaviour is Behaviour.USER_DISABLED,
                locked=user.address in self.state.locked,
                outage=None in self.state.outage or user.address in self.state.outage,
                refresh_tokens=sum(not g.revoked and not g.consent_withdrawn for g in grants),
                revoked_refresh_tokens=sum(g.revoked for g in grants),
                consented=any(who == user.address for who, _ in self.state.consents),
            )

    def user_states(self) -> list[UserView]:
        return [self.user_state(address) for address in self.state.world.users]

    def reset_controls(self) -> None:
        """Back to the scenarios: no disabled, locked or outage; revoked and withdrawn grants stay dead (as on
        Microsoft's side, a revoked token never comes back)."""
        with self.state.lock:
            self.state.disabled.clear()
            self.state.locked.clear()
            self.state.outage.clear()

    # ------------------------------------------------------------ recording

    def _wsgi(self, service: str, handler: Callable[[Request], Response]) -> Callable[..., Any]:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            request = Request(environ)
            seen = self._record(service, request)
            environ[SEEN_KEY] = seen
            try:
                response = handler(request)
            except Exception as exc:  # a simulator bug: say so plainly instead of a bare connection reset
                body = json.dumps(
                    {"error": "simulator_error", "error_description": f"{type(exc).__name__}: {exc}"}
                )
                response = Response(body, status=500, content_type="application/json")
            seen.status = response.status_code
            return response(environ, start_response)

        return app

    def _record(self, service: str, request: Request) -> SeenRequest:
        body = request.get_data(cache=True).decode("utf-8", "replace")
        raw = "\n".join([request.full_path, *(f"{k}: {v}" for k, v in request.headers.items()), body])
        decoded = unquote_plus(raw)
        basic = request.headers.get("Authorization", "")
        if basic.lower().startswith("basic "):
            with contextlib.suppress(ValueError):
                decoded += "\n" + base64.b64decode(basic[6:]).decode("utf-8", "replace")
        secrets = self.state.known_secrets()

        def carries(kind: str, field: str) -> bool:
            if request.form.get(field) or request.args.get(field):
                return True
            return any(s and (s in raw or s in decoded) for s in secrets[kind])

        seen = SeenRequest(
            service=service,
            method=request.method,
            path=request.path,
            password=carries("password", "passwd"),
            code=carries("code", "code"),
            bearer=basic.lower().startswith("bearer "),
            client_secret=carries("client_secret", "client_secret"),
            refresh_token=carries("refresh_token", "refresh_token"),
            user=(request.form.get("login") or None),
        )
        with self.state.lock:
            self.state.requests_seen.append(seen)
        return seen
