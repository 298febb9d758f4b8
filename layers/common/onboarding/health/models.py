"""What the health checks pass around: the queue message, a check's verdict, and the policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from onboarding.agents.models import AgentId, TenantId
from onboarding.agents.schedule import DEFAULT_INTERVAL
from onboarding.invites.reconnect import ReconnectPolicy


class CheckMessage(BaseModel):
    """The body of a message on the checks queue (the dispatcher's and `POST /agents/{agentId}/check`'s)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    tenant_id: TenantId = Field(alias="tenantId")
    agent_id: AgentId = Field(alias="agentId")
    cause: Literal["schedule", "manual"]
    lease: str | None = Field(default=None, max_length=64)

    def body(self) -> str:
        return self.model_dump_json(by_alias=True)


class Verdict(StrEnum):
    HEALTHY = "healthy"
    REFUSED = "refused"  # the stored password or token was refused: never tried again
    LOCKED = "locked"  # the account is locked: not tried before the lockout window ends
    TRANSIENT = "transient"  # timeout, unreachable, 5xx, throttled, DNS: retried with back-off


class CheckState(StrEnum):
    """`checkState` on the agent item."""

    OK = "ok"
    RETRYING = "retrying"  # transient failures: the tick is kept until the disconnect threshold
    LOCKED = "locked"
    REFUSED = "refused"  # needs reconnect


@dataclass(frozen=True)
class ProbeResult:
    """One check's outcome. `problem` is a stable reason code (an Exchange diagnosis or an m365_* reason)."""

    verdict: Verdict
    problem: str | None = None
    password_expires_at: datetime | None = None  # Exchange, when the server offers GetPasswordExpirationDate
    inbox_item_count: int | None = None
    requests: int = 0  # HTTP requests the check made (for the figures)


@dataclass(frozen=True)
class HealthPolicy:
    interval: timedelta = DEFAULT_INTERVAL  # between two scheduled checks of a healthy agent
    lockout_window: timedelta = timedelta(minutes=30)  # a locked account is not tried again before this
    disconnect_after: timedelta = timedelta(hours=24)  # transient failures this long: disconnected
    backoff_first: timedelta = timedelta(minutes=5)  # the first retry after a transient failure, doubling
    expiry_warning: timedelta = timedelta(days=7)  # warn the owner this long before the password expires
    manual_min_interval: timedelta = timedelta(minutes=5)  # POST /agents/{id}/check per agent
    lease_timeout: timedelta = timedelta(
        minutes=15
    )  # a dispatched check not done by then is dispatched again
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)

    def backoff(self, failures: int) -> timedelta:
        """The wait before the next try after `failures` consecutive transient failures (at most the interval)."""
        return min(self.backoff_first * 2 ** max(failures - 1, 0), self.interval)
