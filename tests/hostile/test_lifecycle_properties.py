"""Property: whatever sequence of status changes is attempted, only the lifecycle's transitions happen,
each one exactly as the model says, and the stored agent always matches the model."""

from __future__ import annotations

import boto3
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from moto import mock_aws

from devstack import template as tpl
from onboarding import deps
from onboarding.agents import manage as agents
from onboarding.agents.models import AgentStatus, NewAgent
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core.errors import AgentNotFoundError, IllegalTransitionError
from tests.layer.agents.test_models import LEGAL  # the lifecycle as the issue states it, written out by hand

TABLE = "property-agents"


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mock = mock_aws()
        self.mock.start()
        deps.reset()
        tpl.create_tables(
            boto3.client("dynamodb", region_name="us-east-1"),
            {"AgentsTable": TABLE, "CredentialsTable": "property-credentials"},
        )
        self.repo: DynamoAgentRepository = deps.agent_repository(TABLE)
        agent = agents.add_agent(
            self.repo, "demo", NewAgent(name="P", email="p@contoso.com", type="ms_exchange")
        )
        self.agent_id = agent.agent_id
        self.status: AgentStatus | None = AgentStatus.INVITE_PENDING
        self.version = 1

    def teardown(self) -> None:
        self.mock.stop()
        deps.reset()

    @rule(wanted=st.sampled_from([s for s in AgentStatus if s is not AgentStatus.REMOVED]))
    def attempt(self, wanted: AgentStatus) -> None:
        legal = self.status is not None and (self.status, wanted) in LEGAL
        try:
            moved = self.repo.transition("demo", self.agent_id, wanted)
        except IllegalTransitionError:
            assert self.status is not None
            assert not legal
            return
        except AgentNotFoundError:
            assert self.status is None
            return
        assert legal, f"{self.status} -> {wanted} was written"
        assert moved.status is wanted
        assert moved.version == self.version + 1
        self.status, self.version = wanted, moved.version

    @rule()
    def remove(self) -> None:
        removed = self.repo.delete("demo", self.agent_id)
        assert (removed is None) is (self.status is None)
        self.status = None

    @invariant()
    def stored_matches_model(self) -> None:
        item = self.repo.get_item("demo", self.agent_id)
        if self.status is None:
            assert item is None
        else:
            assert item is not None
            assert (item["status"], int(item["version"])) == (self.status.value, self.version)


Lifecycle.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
TestLifecycle = Lifecycle.TestCase
