"""The simulated Microsoft 365 world, read from ``scenarios.yaml``: tenants, domains, users -- pure data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml

SCENARIOS_FILE = Path(__file__).with_name("scenarios.yaml")
Namespace = Literal["Managed", "Federated"]


class Behaviour(StrEnum):
    OK = "ok"
    ADMIN_CONSENT_REQUIRED = "admin_consent_required"
    CONDITIONAL_ACCESS_BLOCKED = "conditional_access_blocked"
    USER_DISABLED = "user_disabled"
    TENANT_DISABLED = "tenant_disabled"
    NO_MAILBOX = "no_mailbox"
    GRAPH_UNAUTHORIZED = "graph_unauthorized"
    GRAPH_THROTTLED = "graph_throttled"
    GRAPH_UNAVAILABLE = "graph_unavailable"
    TOKEN_TIMEOUT = "token_timeout"  # noqa: S105 - a behaviour name, not a secret


@dataclass(frozen=True)
class Federation:
    brand_name: str
    auth_url: str
    protocol: str = "WSTrust"


@dataclass(frozen=True)
class Tenant:
    key: str
    id: str
    display_name: str
    domains: tuple[str, ...]
    namespace: Namespace = "Managed"
    federation: Federation | None = None

    @property
    def brand_name(self) -> str:
        """What home realm discovery shows as ``FederationBrandName``: the federation's brand, else the name."""
        return self.federation.brand_name if self.federation is not None else self.display_name


@dataclass(frozen=True)
class Inbox:
    total: int = 0
    unread: int = 0


@dataclass(frozen=True)
class User:
    """One person. ``address`` is the sign-in name (UPN); ``mail`` the primary SMTP address."""

    address: str
    password: str = field(repr=False)
    tenant: Tenant
    display_name: str
    behaviour: Behaviour = Behaviour.OK
    mail_address: str | None = None
    aliases: tuple[str, ...] = ()
    inbox: Inbox = Inbox()
    admin: bool = False

    @property
    def oid(self) -> str:
        """The user's object id: stable across runs (derived from tenant and address)."""
        return str(uuid.uuid5(uuid.UUID(self.tenant.id), self.address))

    @property
    def has_mailbox(self) -> bool:
        return self.behaviour is not Behaviour.NO_MAILBOX

    @property
    def mail(self) -> str | None:
        """Graph's ``mail``: null for a user without an Exchange Online mailbox."""
        return (self.mail_address or self.address) if self.has_mailbox else None

    @property
    def proxy_addresses(self) -> list[str]:
        """Graph's ``proxyAddresses``: ``SMTP:`` marks the primary address, ``smtp:`` the aliases."""
        if self.mail is None:
            return []
        others = [a for a in self.aliases if a.lower() != self.mail.lower()]
        return [f"SMTP:{self.mail}", *(f"smtp:{a}" for a in others)]


@dataclass(frozen=True)
class World:
    tenants: dict[str, Tenant]  # by key
    users: dict[str, User]  # by lower-case address

    def user(self, address: str) -> User | None:
        return self.users.get(address.strip().lower())

    def tenant_for_domain(self, domain: str) -> Tenant | None:
        wanted = domain.strip().lower()
        return next((t for t in self.tenants.values() if wanted in t.domains), None)

    def tenant_by_id(self, tenant_id: str) -> Tenant | None:
        wanted = tenant_id.strip().lower()
        return next((t for t in self.tenants.values() if t.id == wanted), None)

    def resolve_tenant(self, name: str) -> Tenant | None:
        """A concrete tenant named by id or verified domain (``None`` for unknown ones)."""
        return self.tenant_by_id(name) or self.tenant_for_domain(name)


def _tenant(key: str, raw: dict[str, Any]) -> Tenant:
    fed = raw.get("federation")
    return Tenant(
        key=key,
        id=str(uuid.UUID(raw["id"])),
        display_name=raw["display_name"],
        domains=tuple(d.lower() for d in raw["domains"]),
        namespace=raw.get("namespace", "Managed"),
        federation=Federation(**fed) if fed else None,
    )


def load(path: Path = SCENARIOS_FILE) -> World:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    tenants = {key: _tenant(key, body) for key, body in raw["tenants"].items()}
    users: dict[str, User] = {}
    for body in raw["users"]:
        user = User(
            address=body["address"].lower(),
            password=body["password"],
            tenant=tenants[body["tenant"]],
            display_name=body["display_name"],
            behaviour=Behaviour(body.get("behaviour", "ok")),
            mail_address=body.get("mail"),
            aliases=tuple(body.get("aliases", ())),
            inbox=Inbox(**body.get("inbox", {})),
            admin=bool(body.get("admin", False)),
        )
        if user.address.rpartition("@")[2] not in user.tenant.domains:
            raise ValueError(f"{user.address}: its domain is not one of tenant {user.tenant.key}'s domains")
        users[user.address] = user
    return World(tenants=tenants, users=users)
