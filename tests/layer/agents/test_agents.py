"""The dashboard's use cases (`onboarding.agents.manage`), called directly against the real repository."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from pydantic import SecretStr

from onboarding.agents import manage as agents
from onboarding.agents.models import AgentStatus, Attr, NewAgent
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core.credentials import KmsCredentialStore
from onboarding.core.errors import AgentNotFoundError, CredentialNotFoundError, DuplicateAgentError
from onboarding.core.executions import execution_name
from tests import lifecycle
from tests.conftest import stored_secrets

S = AgentStatus


def test_an_added_agent_waits_for_invite_version_1_with_the_tenant_name(repo: DynamoAgentRepository) -> None:
    # Given a mailbox the dashboard adds, When it is added
    agent = agents.add_agent(
        repo, "demo", NewAgent(name="Ann", email="ann@contoso.com", type="ms_exchange"), tenant_name="Contoso"
    )
    # Then it is stored invite_pending, version 1, with what the invite sender needs
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.agent == agent
    assert agent.status is S.INVITE_PENDING
    assert agent.version == 1
    assert (record.invite.invite_version, record.invite.tenant_name) == (1, "Contoso")
    assert record.invite.invite_requested_at
    assert record.connection.connect_attempt == 0


def test_the_same_mailbox_twice_is_refused(repo: DynamoAgentRepository) -> None:
    lifecycle.add(repo, email="ann@contoso.com")
    with pytest.raises(DuplicateAgentError):
        lifecycle.add(repo, email="ANN@contoso.com")


def test_reading_another_tenants_or_an_unknown_agent_is_not_found(repo: DynamoAgentRepository) -> None:
    agent = lifecycle.add(repo, tenant="acme")
    with pytest.raises(AgentNotFoundError):
        agents.get_agent(repo, "demo", agent.agent_id)
    assert agents.get_agent(repo, "acme", agent.agent_id) == agent


def test_listing_pages_through_one_tenants_agents_by_status(repo: DynamoAgentRepository) -> None:
    invited = lifecycle.add_at(repo, S.INVITED, email="a@contoso.com")
    lifecycle.add(repo, email="b@contoso.com")
    lifecycle.add(repo, email="c@contoso.com", tenant="acme")
    page = agents.list_agents(repo, "demo", status=S.INVITED, limit=10, next_token=None)
    assert [a.agent_id for a in page.items] == [invited.agent_id]
    assert len(agents.list_agents(repo, "demo", status=None, limit=10, next_token=None).items) == 2


def test_removing_a_connecting_agent_deletes_its_password_and_stops_its_workflow(
    repo: DynamoAgentRepository, credentials: KmsCredentialStore, sfn: Any, state_machine_arn: str
) -> None:
    # Given an agent whose first connection attempt runs, with its password stored
    agent = lifecycle.add_at(repo, S.INVITED)
    agent = lifecycle.walk(repo, agent, S.CONNECTING, set_attributes={Attr.ATTEMPT: 1})
    credentials.put("demo", agent.agent_id, SecretStr("pw"))
    started = sfn.start_execution(
        stateMachineArn=state_machine_arn, name=execution_name(agent.agent_id, 1), input="{}"
    )
    # When the dashboard removes it
    removed = agents.remove_agent(
        repo, "demo", agent.agent_id, agents.Cleanup(credentials, sfn, state_machine_arn)
    )
    # Then it is gone, with its password, and its execution is stopped
    assert removed is not None
    assert removed.agent_id == agent.agent_id
    assert repo.get_record("demo", agent.agent_id) is None
    with pytest.raises(CredentialNotFoundError):
        credentials.get("demo", agent.agent_id)
    assert sfn.describe_execution(executionArn=started["executionArn"])["status"] == "ABORTED"


def test_removing_twice_is_not_an_error(
    repo: DynamoAgentRepository, credentials: KmsCredentialStore, sfn: Any, state_machine_arn: str
) -> None:
    agent = lifecycle.add(repo)
    cleanup = agents.Cleanup(credentials, sfn, state_machine_arn)
    assert agents.remove_agent(repo, "demo", agent.agent_id, cleanup) is not None
    assert agents.remove_agent(repo, "demo", agent.agent_id, cleanup) is None


class _DeleteFailsOnce:
    """The credential store as a throttled DynamoDB leaves it: the first delete raises."""

    def __init__(self, real: KmsCredentialStore) -> None:
        self.real, self.failed = real, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def delete(self, tenant_id: str, agent_id: str) -> None:
        if not self.failed:
            self.failed = True
            raise ReadTimeoutError(endpoint_url="https://dynamodb")
        self.real.delete(tenant_id, agent_id)


def test_a_removal_whose_secret_delete_failed_finishes_when_the_dashboard_retries(
    repo: DynamoAgentRepository, credentials: KmsCredentialStore, sfn: Any, state_machine_arn: str
) -> None:
    # Given a verified agent with its password stored, and the first delete of its secrets failing
    agent = lifecycle.add_at(repo, S.VERIFIED)
    credentials.put("demo", agent.agent_id, SecretStr("pw"))
    cleanup = agents.Cleanup(_DeleteFailsOnce(credentials), sfn, state_machine_arn)  # type: ignore[arg-type]
    # When the dashboard removes it (a 500), and retries the DELETE
    with pytest.raises(ReadTimeoutError):
        agents.remove_agent(repo, "demo", agent.agent_id, cleanup)
    agents.remove_agent(repo, "demo", agent.agent_id, cleanup)
    # Then the agent and its password are both gone: nothing is left that no one could delete any more
    assert repo.get_record("demo", agent.agent_id) is None
    assert stored_secrets(agent.agent_id) == []
