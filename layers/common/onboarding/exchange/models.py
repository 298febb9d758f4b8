"""Typed values of the Exchange connection: its configuration and what discovery and verification found."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
