"""Use cases of the dashboard API: add, list, read and remove agents."""

from __future__ import annotations

from onboarding.errors import AgentNotFoundError
from onboarding.ids import new_id
from onboarding.models import Agent, AgentPage, AgentStatus, NewAgent, utcnow
from onboarding.observability import logger, metrics
from onboarding.store import AgentRepository


def add_agent(repo: AgentRepository, tenant_id: str, new: NewAgent) -> Agent:
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
    repo.create(agent)
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
) -> AgentPage:
    return repo.list(tenant_id, status=status, limit=limit, next_token=next_token)


def get_agent(repo: AgentRepository, tenant_id: str, agent_id: str) -> Agent:
    agent = repo.get(tenant_id, agent_id)
    if agent.status is AgentStatus.REMOVED:
        raise AgentNotFoundError(f"No agent {agent_id} in this account")
    return agent


def remove_agent(repo: AgentRepository, tenant_id: str, agent_id: str) -> Agent | None:
    """Delete the agent and everything kept for it. Idempotent: removing twice is not an error."""
    removed = repo.delete(tenant_id, agent_id)
    if removed is not None:
        logger.info("Agent removed", extra={"agent_id": agent_id})
        metrics.add_metric(name="AgentRemoved", unit="Count", value=1)
    return removed
