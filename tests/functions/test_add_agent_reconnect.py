"""The dashboard API's view of a connected mailbox's health, its list filter on the new statuses, and
`POST /agents/{agentId}/reconnect`, invoked as API Gateway invokes them, against moto."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.add_agent import app
from onboarding import deps
from onboarding.agents.models import AgentStatus, Attr
from onboarding.agents.store import DynamoAgentRepository
from tests import lifecycle
from tests.conftest import TABLE_NAME, LambdaContext, api_event

S = AgentStatus
HEALTH = {
    Attr.LAST_CHECK_AT: "2026-03-03T08:15:00.000Z",
    Attr.LAST_SUCCESS_AT: "2026-03-02T20:15:00.000Z",
    Attr.FAILING_SINCE: "2026-03-03T08:15:00.000Z",
    Attr.CHECK_DUE_AT: "2026-03-03T14:15:00.000Z",
    Attr.PASSWORD_EXPIRES_AT: "2026-04-01T00:00:00.000Z",
    Attr.CHECK_STATE: "failed",
    Attr.CHECK_PROBLEM: "auth_failed",
}


@pytest.fixture
def repo(moto_aws: None) -> DynamoAgentRepository:
    return deps.agent_repository(TABLE_NAME)


def call(event: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    response = app.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]
    body = json.loads(response["body"]) if response.get("body") else None
    return response["statusCode"], body, response.get("headers", {})


def reconnect(agent_id: str, tenant: str = "demo") -> tuple[int, Any, dict[str, str]]:
    return call(
        api_event(
            "POST",
            f"/agents/{agent_id}/reconnect",
            tenant=tenant,
            route="/agents/{agentId}/reconnect",
            path_params={"agentId": agent_id},
        )
    )


def get(agent_id: str) -> Any:
    status, body, _ = call(
        api_event("GET", f"/agents/{agent_id}", route="/agents/{agentId}", path_params={"agentId": agent_id})
    )
    assert status == 200
    return body


def test_an_agent_shows_its_health_in_words(repo: DynamoAgentRepository) -> None:
    # Given an agent whose last check found its password refused
    agent = lifecycle.walk(
        repo, lifecycle.add(repo), S.NEEDS_RECONNECT, reason="auth_failed", set_attributes=HEALTH
    )
    # When the dashboard reads it, alone and in the list
    alone = get(agent.agent_id)
    _, page, _ = call(api_event("GET", "/agents"))
    # Then both show its health, the problem in words, and nothing private
    expected = {
        "lastCheckAt": "2026-03-03T08:15:00.000Z",
        "lastSuccessAt": "2026-03-02T20:15:00.000Z",
        "failingSince": "2026-03-03T08:15:00.000Z",
        "nextCheckAt": "2026-03-03T14:15:00.000Z",
        "passwordExpiresAt": "2026-04-01T00:00:00.000Z",
        "state": "failed",
        "lockedUntil": None,
        "problem": "The server no longer accepts the password.",
        "problemCode": "auth_failed",
        "reconnectEmailRequestedAt": None,
        "reconnectEmailSentAt": None,
        "reconnectEmailPurpose": None,
    }
    assert alone["health"] == expected
    assert page["items"][0]["health"] == expected
    assert "checkProblem" not in json.dumps(page)


def test_a_new_agent_has_an_empty_health(repo: DynamoAgentRepository) -> None:
    agent = lifecycle.add(repo)
    health = get(agent.agent_id)["health"]
    assert set(health.values()) == {None}


@pytest.mark.parametrize("status", [S.NEEDS_RECONNECT, S.DISCONNECTED])
def test_the_list_filters_on_the_new_statuses(repo: DynamoAgentRepository, status: AgentStatus) -> None:
    wanted = lifecycle.add_at(repo, status)
    lifecycle.add_at(repo, S.VERIFIED, email="bob@contoso.com")
    lifecycle.add_at(
        repo, S.NEEDS_RECONNECT if status is S.DISCONNECTED else S.DISCONNECTED, email="cy@contoso.com"
    )
    code, page, _ = call(api_event("GET", "/agents", query={"status": status.value}))
    assert code == 200
    assert [a["agentId"] for a in page["items"]] == [wanted.agent_id]


def test_sending_a_reconnect_email_answers_202_with_the_agent_and_when_it_was_asked(
    repo: DynamoAgentRepository,
) -> None:
    agent = lifecycle.add_at(repo, S.NEEDS_RECONNECT)
    status, body, _ = reconnect(agent.agent_id)
    assert status == 202
    assert body["agent"]["agentId"] == agent.agent_id
    assert body["reconnectEmailRequestedAt"]
    assert body["agent"]["health"]["reconnectEmailRequestedAt"] == body["reconnectEmailRequestedAt"]
    assert body["agent"]["health"]["reconnectEmailPurpose"] == "reconnect"
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert (record.health.reconnect_version, record.health.reconnect_pending) == (1, 1)


def test_a_second_request_within_the_interval_is_a_429_with_retry_after(repo: DynamoAgentRepository) -> None:
    agent = lifecycle.add_at(repo, S.DISCONNECTED)
    assert reconnect(agent.agent_id)[0] == 202
    status, body, headers = reconnect(agent.agent_id)
    assert status == 429
    assert body["error"]["code"] == "reconnect_too_soon"
    interval = timedelta(hours=int(app.deps().settings.reconnect_email_interval_hours)).total_seconds()
    assert 0 < int(headers["Retry-After"]) <= interval
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.health.reconnect_version == 1


def test_the_dashboard_may_send_beyond_the_reminders_limit_once_the_interval_passed(
    repo: DynamoAgentRepository,
) -> None:
    # Given an agent whose reminders are spent, the last one long ago
    long_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat().replace("+00:00", "Z")
    agent = lifecycle.walk(
        repo,
        lifecycle.add(repo),
        S.NEEDS_RECONNECT,
        set_attributes={
            Attr.RECONNECT_EMAILS: 50,
            Attr.RECONNECT_REQUESTED_AT: long_ago,
            Attr.RECONNECT_VERSION: 50,
        },
    )
    assert reconnect(agent.agent_id)[0] == 202


@pytest.mark.parametrize("status", [S.VERIFIED, S.INVITED, S.CONNECTING, S.FAILED])
def test_an_agent_that_needs_no_reconnect_is_a_409(repo: DynamoAgentRepository, status: AgentStatus) -> None:
    agent = lifecycle.add_at(repo, status)
    code, body, _ = reconnect(agent.agent_id)
    assert code == 409
    assert body["error"]["code"] == "illegal_transition"
    assert body["error"]["message"]


def test_an_unknown_or_other_tenants_agent_is_a_404(repo: DynamoAgentRepository) -> None:
    agent = lifecycle.add_at(repo, S.NEEDS_RECONNECT)
    assert reconnect(agent.agent_id, tenant="other")[0] == 404
    assert reconnect("01ARZ3NDEKTSV4RRFFQ69G5FAV")[0] == 404
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.health.reconnect_version == 0


def test_the_openapi_document_describes_the_route_and_the_health() -> None:
    _, document, _ = call(api_event("GET", "/openapi.json", tenant=None))
    operation = document["paths"]["/agents/{agentId}/reconnect"]["post"]
    assert set(operation["responses"]) >= {"202", "404", "409", "429"}
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    schemas = document["components"]["schemas"]
    assert {"AgentHealth", "ReconnectEmailRequested"} <= set(schemas)
    assert schemas["Agent"]["properties"]["health"]
