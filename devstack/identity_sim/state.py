"""What the simulated identity platform remembers: app registrations, sign-in flows, codes, grants, consents,
sessions -- and every request it received (for tests)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .scenarios import User, World

CODE_LIFETIME = 600.0  # seconds; Microsoft's authorization codes are short-lived (about ten minutes)
ACCESS_TOKEN_LIFETIME = 3599
ID_TOKEN_LIFETIME = 3600
REFRESH_TOKEN_INACTIVITY = 90 * 24 * 3600.0  # Microsoft: 90 days without use and a refresh token expires


@dataclass(frozen=True)
class RegisteredApp:
    """An Entra app registration: a confidential web app with a client secret and its redirect URIs."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: tuple[str, ...]
    display_name: str = "Mailbox Onboarding"


@dataclass
class Flow:
    """One authorization request in progress (Microsoft keeps it server-side behind a ``ctx`` value)."""

    ctx: str
    tenant_path: str  # as the client addressed the authority: organizations | common | <id> | <domain>
    app: RegisteredApp
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str | None
    response_mode: str
    prompt: str | None
    login_hint: str | None
    client_info: bool
    admin_consent: bool = False  # started at /adminconsent
    user: User | None = None
    # Where the browser reached the sign-in pages (WSGI SCRIPT_NAME): "" on the simulator's own HTTPS port,
    # the gateway's mount point (`/_local/login`) when the local stack serves them on its own origin.
    root: str = ""


@dataclass
class IssuedCode:
    app: RegisteredApp
    redirect_uri: str
    user: User
    scopes: tuple[str, ...]
    code_challenge: str | None
    nonce: str | None
    issued_at: float
    redeemed: bool = False


@dataclass
class RefreshGrant:
    app: RegisteredApp
    user: User
    scopes: tuple[str, ...]
    issued_at: float
    revoked: bool = False
    consent_withdrawn: bool = False  # the user (or an admin) removed the app's permission grant


@dataclass
class SeenRequest:
    """One request received. The flags say what it carried -- checked on the raw request (URL, headers and
    body), so a password sent in the wrong place is caught too."""

    service: str  # "login" | "graph"
    method: str
    path: str
    status: int = 0
    password: bool = False  # a test user's password (or a ``passwd`` form field)
    code: bool = False  # an authorization code this simulator issued (or a ``code`` field)
    bearer: bool = False  # an ``Authorization: Bearer`` header
    client_secret: bool = False  # a registered client secret (body or Basic header)
    refresh_token: bool = False  # a refresh token this simulator issued (or a ``refresh_token`` field)
    user: str | None = None  # the user the request concerned, when known


SEEN_KEY = "identity_sim.seen"  # the WSGI environ key of the request's SeenRequest


def concerning(environ: dict[str, object], user: User) -> None:
    """Note on the request's record which user it concerned (once known: a code, a refresh token, a bearer)."""
    seen = environ.get(SEEN_KEY)
    if isinstance(seen, SeenRequest):
        seen.user = user.address


@dataclass
class State:
    world: World
    clock: Callable[[], float]
    apps: dict[str, RegisteredApp] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    grants: dict[str, RefreshGrant] = field(default_factory=dict)
    consents: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (user, client) -> scopes
    admin_consents: set[tuple[str, str]] = field(default_factory=set)  # (tenant id, client id)
    sessions: dict[str, str] = field(default_factory=dict)  # ESTSAUTH cookie -> user address
    graph_throttled: set[str] = field(default_factory=set)  # users already sent their one 429
    # Set by the controls while the simulator runs (see IdentitySimulator): users disabled or locked in the
    # directory, and token-endpoint outages (None in ``outage``: every user).
    disabled: set[str] = field(default_factory=set)
    locked: set[str] = field(default_factory=set)
    outage: set[str | None] = field(default_factory=set)
    requests_seen: list[SeenRequest] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @staticmethod
    def new_id(prefix: str = "") -> str:
        return prefix + secrets.token_urlsafe(32)

    def user_by_oid(self, oid: str) -> User | None:
        return next((u for u in self.world.users.values() if u.oid == oid), None)

    def consented(self, user: User, app: RegisteredApp, scopes: tuple[str, ...]) -> bool:
        if (user.tenant.id, app.client_id) in self.admin_consents:
            return True
        return set(scopes) <= self.consents.get((user.address, app.client_id), set())

    def out_for(self, address: str | None) -> bool:
        """Whether the token endpoint is down for this user (or for everyone)."""
        with self.lock:
            return None in self.outage or (address is not None and address in self.outage)

    def known_secrets(self) -> dict[str, set[str]]:
        """Every secret a request might carry, by kind (for the request record)."""
        with self.lock:
            return {
                "password": {u.password for u in self.world.users.values()},
                "code": set(self.codes),
                "client_secret": {a.client_secret for a in self.apps.values()},
                "refresh_token": set(self.grants),
            }
