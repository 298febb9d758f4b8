"""Use cases of the dashboard API: add, list, read and remove agents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from onboarding.agents.models import (
    Agent,
    AgentPage,
    AgentRecord,
    AgentStatus,
    AgentTrace,
    InviteState,
    NewAgent,
    utcnow,
)
from onboarding.agents.start_watch import StartWatch
from onboarding.agents.store import AgentRepository
from onboarding.core.credentials import CredentialStore
from onboarding.core.errors import AgentNotFoundError, error_code
from onboarding.core.executions import execution_arn
from onboarding.core.ids import new_id
from onboarding.core.observability import logger, metrics
from onboarding.exchange.trace import ExchangeTrace


def add_agent(
    repo: AgentRepository, tenant_id: str, new: NewAgent, *, tenant_name: str | None = None
) -> Agent:
    """Store the agent `invite_pending`: its stream record asks `send_invite` for invite version 1.

    Who invites is the name given with the agent, else `tenant_name` (the token's display-name claim)."""
    now = utcnow()
    agent = Agent(
        agent_id=new_id(),
        tenant_id=tenant_id,
        name=new.name,
        email=new.email,
        type=new.type,
        status=AgentStatus.INVITE_PENDING,
        created_at=now,
        updated_at=now,
        version=1,
    )
    repo.create(AgentRecord(agent=agent, invite=InviteState.first(new.inviter_name or tenant_name)))
    logger.info("Agent added", extra={"agent_id": agent.agent_id})
    metrics.add_metric(name="AgentAdded", unit="Count", value=1)
    return agent


def list_agents(
    repo: AgentRepository,
    tenant_id: str,
    *,
    status: AgentStatus | None,
    limit: int,
    next_token: str | None,
    watch: StartWatch | None = None,
) -> AgentPage:
    """A page of agents; with a `watch`, those `connecting` for longer than any start deadline can be
    short (onboarding.agents.start_watch) are read whole and settled first, so the dashboard never shows a dead
    start as running. Agents that moved on meanwhile leave a page filtered by status."""
    page = repo.list(tenant_id, status=status, limit=limit, next_token=next_token)
    if watch is None:
        return page
    settled = [watch.settle_listed(agent) for agent in page.items]
    items = [agent for agent in settled if agent is not None and (status is None or agent.status is status)]
    return page.model_copy(update={"items": items})


def get_agent(repo: AgentRepository, tenant_id: str, agent_id: str, watch: StartWatch | None = None) -> Agent:
    """The agent; with a `watch`, an attempt whose start died is settled first (onboarding.agents.start_watch)."""
    if watch is None:
        agent = repo.get(tenant_id, agent_id)
    else:
        record = watch.check(tenant_id, agent_id)
        if record is None:
            raise AgentNotFoundError(f"No agent {agent_id} in this account")
        agent = record.agent
    if agent.status is AgentStatus.REMOVED:
        raise AgentNotFoundError(f"No agent {agent_id} in this account")
    return agent


def get_agent_trace(repo: AgentRepository, tenant_id: str, agent_id: str) -> AgentTrace:
    """The IT admin's trace of the agent's last discovery/verification (none before the first attempt)."""
    record = repo.get_record(tenant_id, agent_id)
    if record is None or record.agent.status is AgentStatus.REMOVED:
        raise AgentNotFoundError(f"No agent {agent_id} in this account")
    text = record.connection.exchange_trace
    trace = ExchangeTrace.model_validate_json(text) if text else None
    return AgentTrace(agent_id=agent_id, trace=trace)


@dataclass(frozen=True)
class Cleanup:
    """What else holds something of an agent: its stored password and a workflow that may be running."""

    credentials: CredentialStore
    sfn: Any  # the Step Functions client
    state_machine_arn: str


def remove_agent(
    repo: AgentRepository, tenant_id: str, agent_id: str, cleanup: Cleanup | None = None
) -> Agent | None:
    """Delete the agent and everything kept for it. Idempotent: removing twice is not an error.

    The secrets go first, the agent last: when a step fails (an error to the dashboard), the agent is still
    there, so the retried DELETE finds it and does the whole job again (every step is idempotent). The other
    way round, a retry would find no agent, answer 204 and leave the secrets for ever. A secret sealed after
    the delete, by a connect that raced the removal, is deleted by that attempt's workflow, whose first
    step finds no agent (`VerificationSteps.run`)."""
    record = repo.get_record(tenant_id, agent_id)
    if record is None:
        return None
    if cleanup is not None:
        cleanup.credentials.delete(tenant_id, agent_id)
    removed = repo.delete(tenant_id, agent_id)
    if removed is None:
        return None
    if cleanup is not None:
        attempt = record.connection.connect_attempt
        if attempt and removed.status in (AgentStatus.CONNECTING, AgentStatus.NEEDS_SETTINGS):
            _stop_execution(cleanup, agent_id, attempt)
    logger.info("Agent removed", extra={"agent_id": agent_id})
    metrics.add_metric(name="AgentRemoved", unit="Count", value=1)
    return removed


def _stop_execution(cleanup: Cleanup, agent_id: str, attempt: int) -> None:
    arn = execution_arn(cleanup.state_machine_arn, agent_id, attempt)
    try:
        cleanup.sfn.stop_execution(executionArn=arn, cause="The agent was removed")
    except ClientError as error:
        # Already finished or never started: nothing waits any more. (Its steps also stop by themselves
        # once the agent is gone.)
        logger.info("No execution to stop", extra={"agent_id": agent_id, "error": error_code(error)})
