"""The one way tests put an agent somewhere in its lifecycle: add it, then walk it along a path written
out by hand (not derived from `onboarding.agents.models.TRANSITIONS`, which the tests check)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onboarding.agents import manage as agents
from onboarding.agents.models import Agent, AgentStatus, NewAgent
from onboarding.agents.store import AgentRepository
from onboarding.invites import delivery as invites
from onboarding.invites.mailer import Mailer
from onboarding.invites.models import InviteRequested
from onboarding.invites.store import InviteRepository
from tests.invite_helpers import BASE_URL, emails, token_of

S = AgentStatus
# From invite_pending, the steps to each status (as the invite sender and the workflow take them).
PATH_TO: dict[AgentStatus, list[AgentStatus]] = {
    S.INVITE_PENDING: [],
    S.INVITED: [S.INVITED],
    S.INVITE_FAILED: [S.INVITE_FAILED],
    S.INVITE_BOUNCED: [S.INVITE_BOUNCED],
    S.CONNECTING: [S.INVITED, S.CONNECTING],
    S.NEEDS_SETTINGS: [S.INVITED, S.CONNECTING, S.NEEDS_SETTINGS],
    S.VERIFIED: [S.INVITED, S.CONNECTING, S.VERIFIED],
    S.FAILED: [S.INVITED, S.CONNECTING, S.FAILED],
    S.NEEDS_RECONNECT: [S.INVITED, S.CONNECTING, S.VERIFIED, S.NEEDS_RECONNECT],
    S.DISCONNECTED: [S.INVITED, S.CONNECTING, S.VERIFIED, S.DISCONNECTED],
}


def add(
    repo: AgentRepository,
    *,
    email: str = "ann@contoso.com",
    tenant: str = "demo",
    name: str = "Ann",
    tenant_name: str | None = None,
) -> Agent:
    """A new agent (`invite_pending`), added as the dashboard API adds it."""
    new = NewAgent(name=name, email=email, type="ms_exchange")
    return agents.add_agent(repo, tenant, new, tenant_name=tenant_name)


def walk(
    repo: AgentRepository,
    agent: Agent,
    status: AgentStatus,
    *,
    reason: str | None = None,
    set_attributes: Mapping[str, Any] | None = None,
) -> Agent:
    """Move the agent on to `status` from where it stands on that status's path; `reason` and
    `set_attributes` go with the last step."""
    path = PATH_TO[status]
    if agent.status in path:
        path = path[path.index(agent.status) + 1 :]
    for step in path:
        last = step is status
        agent = repo.transition(
            agent.tenant_id,
            agent.agent_id,
            step,
            reason=reason if last else None,
            set_attributes=set_attributes if last else None,
        )
    return agent


def add_at(repo: AgentRepository, status: AgentStatus, **kwargs: Any) -> Agent:
    """A new agent walked straight to `status`."""
    return walk(repo, add(repo, **kwargs), status)


INVITE_CONFIG = invites.InviteConfig(public_base_url=BASE_URL)


def send_invite(repo: AgentRepository, invite_repo: InviteRepository, mailer: Mailer, agent: Agent) -> str:
    """Deliver the agent's current invite as the invite sender does; returns the link's token."""
    record = repo.get_record(agent.tenant_id, agent.agent_id)
    assert record is not None
    request = InviteRequested(
        tenant_id=agent.tenant_id, agent_id=agent.agent_id, invite_version=record.invite.invite_version
    )
    invites.deliver_invite(request, repo=repo, invites=invite_repo, mailer=mailer, config=INVITE_CONFIG)
    return token_of(emails()[-1])
