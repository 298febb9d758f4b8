"""Step Functions' status-change event for a dead verification workflow (FAILED, TIMED_OUT, ABORTED), as
`functions/workflow_events` receives it from the template's EventBridge rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from functions.workflow_events import app
from onboarding import deps
from onboarding.agents.models import INTERNAL_ERROR, AgentStatus, Attr
from onboarding.agents.store import DynamoAgentRepository
from tests import lifecycle
from tests.conftest import CREDENTIALS_TABLE, LambdaContext, load_event, stored_secrets


def _event(agent_id: str, attempt: int, status: str = "FAILED", **execution_input: Any) -> dict[str, Any]:
    event = load_event("sfn_execution_status_change.json")
    event["detail"]["status"] = status
    event["detail"]["input"] = json.dumps(
        {"tenantId": "demo", "agentId": agent_id, "attempt": attempt, **execution_input}
    )
    return event


def _waiting(repo: DynamoAgentRepository, key_arn: str, status: AgentStatus, attempt: int = 1) -> str:
    """An agent waiting on attempt `attempt` of its workflow, its password sealed."""
    agent = lifecycle.add_at(repo, status)
    repo.update_attributes("demo", agent.agent_id, {Attr.ATTEMPT: attempt}, expected_status=status)
    deps.credential_store(CREDENTIALS_TABLE, key_arn).put("demo", agent.agent_id, SecretStr("Pass-1"))
    return agent.agent_id


@pytest.mark.parametrize("dead", ["FAILED", "TIMED_OUT", "ABORTED"])
@pytest.mark.parametrize("waiting", [AgentStatus.CONNECTING, AgentStatus.NEEDS_SETTINGS])
def test_an_agent_waiting_on_a_dead_workflow_ends_failed_without_its_secrets(
    repo: DynamoAgentRepository, key_arn: str, lambda_context: LambdaContext, dead: str, waiting: AgentStatus
) -> None:
    agent_id = _waiting(repo, key_arn, waiting)
    assert stored_secrets(agent_id)

    assert app.lambda_handler(_event(agent_id, 1, dead), lambda_context) == {"settled": True}

    agent = repo.get("demo", agent_id)
    assert (agent.status, agent.status_reason) == (AgentStatus.FAILED, INTERNAL_ERROR)
    assert stored_secrets(agent_id) == []
    assert Attr.TASK_TOKEN not in (repo.get_item("demo", agent_id) or {})


def test_a_newer_attempt_is_left_alone(
    repo: DynamoAgentRepository, key_arn: str, lambda_context: LambdaContext
) -> None:
    # Given the owner tried again: attempt 2 runs, with its own password
    agent_id = _waiting(repo, key_arn, AgentStatus.CONNECTING, attempt=2)
    # When attempt 1's execution is reported dead
    assert app.lambda_handler(_event(agent_id, 1), lambda_context) == {"settled": False}
    # Then attempt 2 goes on, its secret kept
    assert repo.get("demo", agent_id).status is AgentStatus.CONNECTING
    assert len(stored_secrets(agent_id)) == 1


def test_a_recorded_verdict_stands(
    repo: DynamoAgentRepository, key_arn: str, lambda_context: LambdaContext
) -> None:
    agent = lifecycle.add_at(repo, AgentStatus.VERIFIED)
    repo.update_attributes("demo", agent.agent_id, {Attr.ATTEMPT: 1}, expected_status=AgentStatus.VERIFIED)
    assert app.lambda_handler(_event(agent.agent_id, 1), lambda_context) == {"settled": False}
    assert repo.get("demo", agent.agent_id).status is AgentStatus.VERIFIED


def test_a_removed_agents_secrets_are_deleted(
    repo: DynamoAgentRepository, key_arn: str, lambda_context: LambdaContext
) -> None:
    # Given the connect page stored a password just as the agent was removed (its workflow then stopped)
    agent_id = _waiting(repo, key_arn, AgentStatus.CONNECTING)
    repo.delete("demo", agent_id)
    assert app.lambda_handler(_event(agent_id, 1, "ABORTED"), lambda_context) == {"settled": False}
    assert stored_secrets(agent_id) == []


def test_an_execution_started_by_the_previous_version_is_read(
    repo: DynamoAgentRepository, key_arn: str, lambda_context: LambdaContext
) -> None:
    """Executions started before `method` existed (and after fields this code does not know) carry the same
    references: the input's other fields are the workflow's business."""
    agent_id = _waiting(repo, key_arn, AgentStatus.CONNECTING)
    event = _event(agent_id, 1)
    event["detail"]["input"] = json.dumps(
        {"tenantId": "demo", "agentId": agent_id, "attempt": 1, "settingsTimeoutSeconds": 600, "later": True}
    )
    assert app.lambda_handler(event, lambda_context) == {"settled": True}


@pytest.mark.parametrize("status", ["SUCCEEDED", "RUNNING"])
def test_other_statuses_are_refused(lambda_context: LambdaContext, status: str, moto_aws: None) -> None:
    """The rule sends only the dead ones; anything else is a mis-wired rule, refused loudly."""
    with pytest.raises(ValidationError):
        app.lambda_handler(_event("A", 1, status), lambda_context)
