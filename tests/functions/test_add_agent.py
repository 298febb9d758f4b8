"""The dashboard's agents API, invoked as API Gateway invokes it, against moto."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from functions.add_agent import app
from tests.conftest import LambdaContext, api_event

NEW = {"name": "Ann Lee", "email": "ann@contoso.com", "type": "ms_exchange"}


def call(event: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    response = app.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]
    body = json.loads(response["body"]) if response.get("body") else None
    return response["statusCode"], body, response.get("headers", {})


def add(tenant: str = "demo", **fields: str) -> tuple[int, Any, dict[str, str]]:
    return call(api_event("POST", "/agents", tenant=tenant, body={**NEW, **fields}))


def get(agent_id: str, tenant: str = "demo") -> tuple[int, Any, dict[str, str]]:
    return call(
        api_event(
            "GET",
            f"/agents/{agent_id}",
            tenant=tenant,
            route="/agents/{agentId}",
            path_params={"agentId": agent_id},
        )
    )


def delete(agent_id: str, tenant: str = "demo") -> tuple[int, Any, dict[str, str]]:
    return call(
        api_event(
            "DELETE",
            f"/agents/{agent_id}",
            tenant=tenant,
            route="/agents/{agentId}",
            path_params={"agentId": agent_id},
        )
    )


def assert_error_body(body: Any, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


@pytest.fixture(autouse=True)
def _moto(moto_aws: None) -> None:
    """Every test here runs against moto."""


def test_adding_an_agent_answers_201_with_the_agent_invite_pending() -> None:
    status, body, headers = add()
    assert status == 201
    assert body["name"] == "Ann Lee"
    assert body["email"] == "ann@contoso.com"
    assert body["type"] == "ms_exchange"
    assert body["status"] == "invite_pending"
    assert body["tenantId"] == "demo"
    assert body["version"] == 1
    assert body["signIn"] is None  # no connection attempt yet
    assert headers["Location"] == f"/agents/{body['agentId']}"
    assert get(body["agentId"])[1] == body


def test_the_tenant_comes_from_the_token_not_the_body() -> None:
    status, body, _ = call(api_event("POST", "/agents", tenant="acme", body={**NEW, "tenantId": "demo"}))
    assert status == 422
    assert body["error"]["details"][0]["field"] == "tenantId"


def test_a_token_without_tenant_claim_is_forbidden() -> None:
    status, body, _ = call(api_event("GET", "/agents", tenant=None))
    assert status == 403
    assert_error_body(body, "missing_tenant")


@pytest.mark.parametrize("tenant", ["a#b", "", "x" * 200])
def test_a_tenant_claim_that_could_forge_keys_is_refused(tenant: str) -> None:
    status, body, _ = call(api_event("GET", "/agents", tenant=tenant))
    assert status == 403
    assert_error_body(body, "missing_tenant")


@pytest.mark.parametrize("email", ["ann@contoso.com", "ANN@CONTOSO.COM", "Ann@Contoso.com"])
def test_the_same_mailbox_again_is_409_whatever_the_letter_case(email: str) -> None:
    created, first, _ = add()
    assert created == 201
    status, body, _ = add(email=email)
    assert status == 409
    assert_error_body(body, "duplicate_agent")
    assert body["error"]["details"][0]["agentId"] == first["agentId"]  # the agent that has it


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**NEW, "name": ""}, "name"),
        ({**NEW, "name": "   "}, "name"),
        ({**NEW, "name": "x" * 101}, "name"),
        ({**NEW, "email": "not an email"}, "email"),
        ({**NEW, "type": "gmail"}, "type"),
        ({**NEW, "color": "red"}, "color"),
        ({"email": "ann@contoso.com", "type": "ms_exchange"}, "name"),
    ],
)
def test_bad_input_is_422_naming_the_field(body: dict[str, str], field: str) -> None:
    status, answer, _ = call(api_event("POST", "/agents", body=body))
    assert status == 422
    assert_error_body(answer, "validation_error")
    assert field in [d["field"] for d in answer["error"]["details"]]


@pytest.mark.parametrize("raw", ["{not json", "", "[]", "null", '"text"'])
def test_a_body_that_is_not_a_json_object_is_422(raw: str) -> None:
    status, body, _ = call(api_event("POST", "/agents", raw_body=raw))
    assert status == 422
    assert_error_body(body, "validation_error")
    assert body["error"]["details"]


def test_another_tenants_agent_is_404_for_read_and_untouched_by_delete() -> None:
    _, theirs, _ = add(tenant="acme")
    status, body, _ = get(theirs["agentId"], tenant="demo")
    assert status == 404
    assert_error_body(body, "agent_not_found")
    assert delete(theirs["agentId"], tenant="demo")[0] == 204
    assert get(theirs["agentId"], tenant="acme")[0] == 200


def test_delete_is_204_twice_and_then_nothing_is_readable() -> None:
    _, agent, _ = add()
    assert delete(agent["agentId"])[:2] == (204, None)
    assert delete(agent["agentId"])[:2] == (204, None)
    assert get(agent["agentId"])[0] == 404
    assert call(api_event("GET", "/agents"))[1]["items"] == []


def test_listing_pages_and_filters_by_status() -> None:
    ids = [add(email=f"user{i}@contoso.com")[1]["agentId"] for i in range(5)]
    seen, token = [], None
    while True:
        query = {"limit": "2", **({"nextToken": token} if token else {})}
        status, page, _ = call(api_event("GET", "/agents", query=query))
        assert status == 200
        assert len(page["items"]) <= 2
        seen += [a["agentId"] for a in page["items"]]
        token = page["nextToken"]
        if not token:
            break
    assert seen == ids
    status, page, _ = call(api_event("GET", "/agents", query={"status": "invite_pending"}))
    assert [a["agentId"] for a in page["items"]] == ids
    assert call(api_event("GET", "/agents", query={"status": "verified"}))[1]["items"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "happy"}, "status"),
        ({"nextToken": "forged"}, "nextToken"),
    ],
)
def test_bad_list_parameters_are_422(query: dict[str, str], field: str) -> None:
    status, body, _ = call(api_event("GET", "/agents", query=query))
    assert status == 422
    assert field in [d["field"] for d in body["error"]["details"]]


def test_the_openapi_document_describes_every_agents_route() -> None:
    status, document, _ = call(api_event("GET", "/openapi.json", tenant=None))
    assert status == 200
    assert set(document["paths"]) >= {"/agents", "/agents/{agentId}"}
    assert set(document["paths"]["/agents"]) == {"get", "post"}
    assert set(document["paths"]["/agents/{agentId}"]) == {"get", "delete"}


def test_the_openapi_document_names_operations_and_the_bearer_token_and_only_possible_errors() -> None:
    _, document, _ = call(api_event("GET", "/openapi.json", tenant=None))
    # Given the document the API serves, Then every route needs the dashboard's JWT
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The dashboard's access token (JWT)",
    }
    assert document["security"] == [{"bearerAuth": []}]
    operations = {
        (path, method): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    ids = {key: op["operationId"] for key, op in operations.items()}
    assert ids == {
        ("/agents", "post"): "addAgent",
        ("/agents", "get"): "listAgents",
        ("/agents/{agentId}", "get"): "getAgent",
        ("/agents/{agentId}", "delete"): "removeAgent",
        ("/agents/{agentId}/invite", "post"): "resendInvite",
        ("/agents/{agentId}/trace", "get"): "getAgentTrace",
        ("/agents/{agentId}/reconnect", "post"): "sendReconnectEmail",
        ("/agents/{agentId}/check", "post"): "checkAgent",
    }
    # And each documents 401, 404 only where a path names an agent, 409 only where a conflict can happen
    codes = {key: set(op["responses"]) for key, op in operations.items()}
    assert all({"401", "403", "422", "500"} <= found for found in codes.values())
    assert {key for key, found in codes.items() if "404" in found} == {
        ("/agents/{agentId}", "get"),
        ("/agents/{agentId}", "delete"),
        ("/agents/{agentId}/invite", "post"),
        ("/agents/{agentId}/trace", "get"),
        ("/agents/{agentId}/reconnect", "post"),
        ("/agents/{agentId}/check", "post"),
    }
    assert {key for key, found in codes.items() if "409" in found} == {
        ("/agents", "post"),
        ("/agents/{agentId}", "delete"),
        ("/agents/{agentId}/invite", "post"),
        ("/agents/{agentId}/reconnect", "post"),
        ("/agents/{agentId}/check", "post"),
    }
    # and 429 only where a limit applies
    assert {key for key, found in codes.items() if "429" in found} == {
        ("/agents/{agentId}/reconnect", "post"),
        ("/agents/{agentId}/check", "post"),
    }
    unauthorized = operations[("/agents", "get")]["responses"]["401"]["content"]["application/json"]["schema"]
    assert unauthorized == {"$ref": "#/components/schemas/GatewayError"}


def test_the_openapi_document_carries_only_the_schemas_its_operations_use() -> None:
    _, document, _ = call(api_event("GET", "/openapi.json", tenant=None))
    schemas = document["components"]["schemas"]
    # Given every schema a reference reaches, from the operations and through other schemas
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    # Then each schema is referenced, every reference resolves, and Powertools' own validation-error
    # models (replaced by our ErrorResponse) are gone
    assert set(schemas) == referenced
    assert {"Agent", "NewAgent", "ErrorResponse", "GatewayError", "AgentTrace"} <= set(schemas)
    assert not {"HTTPValidationError", "ValidationError", "ResponseValidationError"} & set(schemas)


def get_trace(agent_id: str, tenant: str = "demo") -> tuple[int, Any, dict[str, str]]:
    return call(
        api_event(
            "GET",
            f"/agents/{agent_id}/trace",
            tenant=tenant,
            route="/agents/{agentId}/trace",
            path_params={"agentId": agent_id},
        )
    )


def test_the_trace_is_null_before_an_attempt_and_404_for_another_tenant() -> None:
    _, agent, _ = add()
    assert get_trace(agent["agentId"])[:2] == (200, {"agentId": agent["agentId"], "trace": None})
    status, body, _ = get_trace(agent["agentId"], tenant="acme")
    assert status == 404
    assert_error_body(body, "agent_not_found")


def test_the_trace_of_the_last_attempt_is_returned() -> None:
    from onboarding.agents.models import AgentStatus, Attr
    from onboarding.agents.store import DynamoAgentRepository
    from onboarding.deps import reset
    from onboarding.exchange.trace import TraceRecorder

    _, agent, _ = add()
    trace = TraceRecorder("contoso.com")
    trace.add("dns", host="autodiscover.contoso.com", addresses=("203.0.113.7",))
    trace.verdict = "unreachable"
    reset()
    repo = app.deps().repo
    assert isinstance(repo, DynamoAgentRepository)
    repo.update_attributes(
        "demo",
        agent["agentId"],
        {Attr.EXCHANGE_TRACE: trace.snapshot().model_dump_json()},
        expected_status=AgentStatus.INVITE_PENDING,
    )
    status, body, _ = get_trace(agent["agentId"])
    assert status == 200
    assert body["trace"]["verdict"] == "unreachable"
    assert body["trace"]["steps"][0]["addresses"] == ["203.0.113.7"]
