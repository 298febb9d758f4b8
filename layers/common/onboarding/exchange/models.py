"""Typed values of the Exchange connection: its configuration and what discovery and verification found."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from .trace import TraceRecorder


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


@dataclass(frozen=True, kw_only=True)
class ExchangeContext:
    """Everything ``discover(email, password, context)`` and ``verify(email, password, context)`` take besides
    the address and the password: what the owner typed, what an earlier discovery learned, the budgets, and
    where the IT admin's trace goes.

    ``verify`` goes to ``ews_url`` (found by discovery: no probe when ``auth_type`` is known too), else to the
    ``server`` the owner typed. ``server_build`` (the build autodiscover reported) spares exchangelib's
    version-guessing request. ``confirmed_hosts`` are servers in another domain the owner allowed discovery to
    send the password to. ``sleep`` waits out a busy server (within the budget; tests pass their own).
    """

    config: ExchangeConfig
    username: str | None = None  # the login; None or blank: the email address
    server: str | None = None  # typed by the owner: a host name or any URL of the server
    ews_url: str | None = None
    auth_type: str | None = None
    server_build: str | None = None
    confirmed_hosts: tuple[str, ...] = ()
    trace: TraceRecorder | None = None  # receives every step (optional)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def login(self, email: str) -> str:
        return (self.username or "").strip() or email.strip()

    def found(self, settings: ExchangeSettings) -> ExchangeContext:
        """This context carrying what discovery found (verify then goes there without probing)."""
        return replace(
            self,
            ews_url=settings.ews_url,
            auth_type=settings.auth_type,
            server_build=settings.server_build,
            username=settings.username or self.username,
        )
