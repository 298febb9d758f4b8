"""`POST /agents/{agentId}/check`, invoked as API Gateway invokes it, against moto."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from onboarding import deps
from onboarding.agents.models import AgentStatus
from tests import lifecycle
from tests.conftest import TABLE_NAME, api_event
from tests.functions.test_add_agent import call


@pytest.fixture
def queue(moto_aws: None) -> str:
    url: str = boto3.client("sqs").create_queue(QueueName="checks")["QueueUrl"]
    return url


def check(agent_id: str, tenant: str = "demo") -> tuple[int, Any, dict[str, str]]:
    return call(
        api_event(
            "POST",
            f"/agents/{agent_id}/check",
            tenant=tenant,
            route="/agents/{agentId}/check",
            path_params={"agentId": agent_id},
        )
    )


def test_a_connected_mailbox_is_checked_on_request_once_per_interval(queue: str) -> None:
    repo = deps.agent_repository(TABLE_NAME)
    agent = lifecycle.add_at(repo, AgentStatus.VERIFIED)

    first = check(agent.agent_id)
    again = check(agent.agent_id)

    assert first[0] == 202
    assert first[1]["agentId"] == agent.agent_id
    (message,) = boto3.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert (body["agentId"], body["cause"]) == (agent.agent_id, "manual")
    assert again[0] == 429
    assert again[1]["error"]["code"] == "too_soon"
    assert 0 < int(again[2]["Retry-After"]) <= 300


@pytest.mark.parametrize("status", [AgentStatus.INVITED, AgentStatus.NEEDS_RECONNECT])
def test_a_mailbox_not_connected_or_refused_is_not_checked(queue: str, status: AgentStatus) -> None:
    agent = lifecycle.add_at(deps.agent_repository(TABLE_NAME), status)

    code, body, _ = check(agent.agent_id)

    assert (code, body["error"]["code"]) == (409, "illegal_transition")
    assert "Messages" not in boto3.client("sqs").receive_message(QueueUrl=queue)


def test_another_tenants_agent_is_404(queue: str) -> None:
    agent = lifecycle.add_at(deps.agent_repository(TABLE_NAME), AgentStatus.VERIFIED)
    assert check(agent.agent_id, tenant="other")[0] == 404
