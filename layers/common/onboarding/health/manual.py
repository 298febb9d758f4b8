"""`POST /agents/{agentId}/check`: check a connected mailbox now (the dashboard's button).

Rate-limited per agent (`manualCheckAt`, a conditional write: of two quick clicks one goes through); the
check itself is the checker's, from the same queue, so it follows the same rules: a refused password is
never tried again (`needs_reconnect`: 409, ask for a reconnect instead) and a locked account is not tried
inside its lockout window (429 until then).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from onboarding.agents.models import Agent, AgentStatus, Attr
from onboarding.agents.schedule import iso, parse_iso
from onboarding.agents.store import AgentRepository
from onboarding.core.errors import (
    AgentNotFoundError,
    ConcurrentModificationError,
    IllegalTransitionError,
    TooSoonError,
)
from onboarding.core.ids import new_id
from onboarding.core.observability import logger, metrics
from onboarding.health.check import CHECKED
from onboarding.health.models import CheckMessage, HealthPolicy

S = AgentStatus


def request_check(
    repo: AgentRepository,
    sqs: Any,
    queue_url: str,
    tenant_id: str,
    agent_id: str,
    *,
    policy: HealthPolicy,
    now: datetime | None = None,
) -> Agent:
    """Queue a check of the agent now; the agent as it is (the check lands within seconds)."""
    now = now or datetime.now(UTC)
    record = repo.get_record(tenant_id, agent_id)
    if record is None:
        raise AgentNotFoundError(f"No agent {agent_id} in this account")
    agent, health = record.agent, record.health
    if agent.status is S.NEEDS_RECONNECT:
        raise IllegalTransitionError(
            "The mailbox's server refused the stored password or sign-in; it is not tried again. "
            "Ask the owner to reconnect (POST /agents/{agentId}/reconnect)"
        )
    if agent.status not in CHECKED:
        raise IllegalTransitionError(f"The mailbox is not connected yet (status {agent.status.value})")
    locked_until = parse_iso(health.locked_until)
    if locked_until is not None and now < locked_until:
        raise TooSoonError(
            "The account is locked on the mail server; it is not tried again before the lockout window ends",
            retry_after=math.ceil((locked_until - now).total_seconds()),
            details=[{"message": f"locked until {iso(locked_until)}"}],
        )
    last = parse_iso(health.manual_check_at)
    if last is not None and now - last < policy.manual_min_interval:
        allowed = last + policy.manual_min_interval
        raise TooSoonError(
            "This mailbox was checked on request a moment ago; ask again later",
            retry_after=math.ceil((allowed - now).total_seconds()),
            details=[{"message": f"next check on request from {iso(allowed)}"}],
        )
    lease = new_id()
    try:
        repo.update_attributes(
            tenant_id,
            agent_id,
            {Attr.MANUAL_CHECK_AT: iso(now), Attr.CHECK_LEASE: lease},
            expected_status=agent.status,
            expected={Attr.MANUAL_CHECK_AT: health.manual_check_at} if health.manual_check_at else None,
        )
    except ConcurrentModificationError as error:
        raise TooSoonError("A check of this mailbox was just asked for", retry_after=5) from error
    message = CheckMessage(tenant_id=tenant_id, agent_id=agent_id, cause="manual", lease=lease)
    sqs.send_message(QueueUrl=queue_url, MessageBody=message.body())
    logger.info("Check requested", extra={"agent_id": agent_id})
    metrics.add_metric(name="CheckRequested", unit="Count", value=1)
    return agent
