"""Bounces and complaints (SES configuration set -> SNS) and the dashboard's resend route."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from functions.add_agent import app as api
from functions.send_invite import bounces
from onboarding import deps
from onboarding.agents.models import Agent, AgentStatus
from onboarding.agents.store import DynamoAgentRepository
from onboarding.invites.mailer import tag_value
from tests import lifecycle
from tests.conftest import LambdaContext, api_event

S = AgentStatus


@pytest.fixture(autouse=True)
def _fresh_deps() -> None:
    deps.reset()


def _add(repo: DynamoAgentRepository) -> Agent:
    return lifecycle.add_at(repo, S.INVITED)


def sns_event(agent: Agent, event_type: str = "Bounce", bounce_type: str = "Permanent") -> dict[str, Any]:
    ses: dict[str, Any] = {
        "eventType": event_type,
        "mail": {
            "messageId": "0100018c-abc",
            "destination": [agent.email],
            "tags": {"agent_id": [agent.agent_id], "invite_version": ["1"], "tenant": [tag_value("demo")]},
        },
    }
    if event_type == "Bounce":
        ses["bounce"] = {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": agent.email.upper()}],
        }
    else:
        ses["complaint"] = {"complainedRecipients": [{"emailAddress": agent.email}]}
    record = {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:invite-events:1",
        "Sns": {
            "Type": "Notification",
            "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:invite-events",
            "Subject": None,
            "Message": json.dumps(ses),
            "Timestamp": "2026-11-27T01:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/cert.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/unsubscribe",
            "MessageAttributes": {},
        },
    }
    return {"Records": [record]}


@pytest.mark.parametrize("kind", ["Bounce", "Complaint"])
def test_a_permanent_bounce_or_complaint_ends_in_invite_bounced(
    repo: DynamoAgentRepository, kind: str
) -> None:
    agent = _add(repo)
    result = bounces.lambda_handler(sns_event(agent, kind), LambdaContext())  # type: ignore[arg-type]
    assert result == {"notifications": 1, "agentsChanged": 1}
    bounced = repo.get("demo", agent.agent_id)
    assert bounced.status is S.INVITE_BOUNCED
    assert bounced.status_reason is not None
    assert kind in bounced.status_reason


def test_a_transient_bounce_changes_nothing(repo: DynamoAgentRepository) -> None:
    agent = _add(repo)
    bounces.lambda_handler(sns_event(agent, bounce_type="Transient"), LambdaContext())  # type: ignore[arg-type]
    assert repo.get("demo", agent.agent_id).status is S.INVITED


def test_an_sns_message_that_is_not_ses_json_is_refused_and_changes_nothing(
    repo: DynamoAgentRepository,
) -> None:
    # Given an SNS delivery whose message is not the JSON SES publishes
    agent = _add(repo)
    event = sns_event(agent)
    event["Records"][0]["Sns"]["Message"] = "not json"
    # When it is handled, Then the invocation fails (SNS retries it) and the agent is unchanged
    with pytest.raises(ValidationError, match=r"Records\.0\.Sns\.Message"):
        bounces.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]
    assert repo.get("demo", agent.agent_id).status is S.INVITED


def _resend(agent_id: str, tenant: str = "demo") -> dict[str, Any]:
    event = api_event(
        "POST",
        f"/agents/{agent_id}/invite",
        tenant=tenant,
        route="/agents/{agentId}/invite",
        path_params={"agentId": agent_id},
    )
    return api.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]


def test_resend_of_a_bounced_agent_is_refused_with_a_clear_message(repo: DynamoAgentRepository) -> None:
    agent = _add(repo)
    bounces.lambda_handler(sns_event(agent), LambdaContext())  # type: ignore[arg-type]
    response = _resend(agent.agent_id)
    assert response["statusCode"] == 409
    error = json.loads(response["body"])["error"]
    assert error["code"] == "invite_bounced"
    assert "bounced" in error["message"]


def test_resend_answers_202_and_asks_for_a_new_invite_version(repo: DynamoAgentRepository) -> None:
    agent = _add(repo)
    response = _resend(agent.agent_id)
    assert response["statusCode"] == 202
    assert json.loads(response["body"])["status"] == "invite_pending"
    item = repo.get_item("demo", agent.agent_id)
    assert item is not None
    assert item["inviteVersion"] == 2


def test_resend_of_a_verified_agent_is_409_and_of_an_unknown_or_foreign_one_404(
    repo: DynamoAgentRepository,
) -> None:
    agent = _add(repo)
    assert _resend(agent.agent_id, tenant="acme")["statusCode"] == 404
    assert _resend("01J0000000000000000000000Z")["statusCode"] == 404
    lifecycle.walk(repo, agent, S.VERIFIED)
    assert _resend(agent.agent_id)["statusCode"] == 409


def test_the_tenant_name_claim_is_stored_with_a_new_agent(repo: DynamoAgentRepository) -> None:
    event = api_event(
        "POST", "/agents", body={"name": "Ann", "email": "ann@contoso.com", "type": "ms_exchange"}
    )
    event["requestContext"]["authorizer"]["jwt"]["claims"]["custom:tenant_name"] = "Contoso Ltd"
    response = api.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]
    assert response["statusCode"] == 201, response["body"]
    item = repo.get_item("demo", json.loads(response["body"])["agentId"])
    assert item is not None
    assert (item["tenantName"], item["inviteVersion"]) == ("Contoso Ltd", 1)
    assert "tenantName" not in json.loads(response["body"])


def _add_with_claim(body: dict[str, Any], claim: str | None) -> dict[str, Any]:
    event = api_event(
        "POST", "/agents", body={"name": "Ann", "email": "ann@contoso.com", "type": "ms_exchange", **body}
    )
    if claim is not None:
        event["requestContext"]["authorizer"]["jwt"]["claims"]["custom:tenant_name"] = claim
    return api.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("inviter_name", "claim", "stored"),
    [
        ("  Contoso Support  ", "Contoso Ltd", "Contoso Support"),  # the name given wins, trimmed
        (None, "Contoso Ltd", "Contoso Ltd"),  # else the token's claim
        (None, None, None),  # else no one: the pages and the email use neutral words
    ],
)
def test_who_invites_is_the_name_given_with_the_agent_else_the_token_claim(
    repo: DynamoAgentRepository, inviter_name: str | None, claim: str | None, stored: str | None
) -> None:
    response = _add_with_claim({"inviterName": inviter_name} if inviter_name else {}, claim)
    assert response["statusCode"] == 201, response["body"]
    item = repo.get_item("demo", json.loads(response["body"])["agentId"])
    assert item is not None
    assert item.get("tenantName") == stored
    assert "inviterName" not in json.loads(
        response["body"]
    )  # kept with the invite, not the agent's API shape


@pytest.mark.parametrize(
    "inviter_name",
    [
        "",
        "   ",
        "x" * 101,
        "Contoso\nBcc: someone",
        "Contoso\tLtd",
        "Contoso\u202eevil",  # a bidirectional override would reverse what the subject shows
        "Contoso\u2028Ltd",
        "Contoso\u200bLtd",
        42,
    ],
)
def test_an_unusable_inviter_name_is_422_naming_the_field(inviter_name: object) -> None:
    response = _add_with_claim({"inviterName": inviter_name}, "Contoso Ltd")
    assert response["statusCode"] == 422
    details = json.loads(response["body"])["error"]["details"]
    assert [d["field"] for d in details] == ["inviterName"]


def test_the_openapi_document_describes_the_inviter_name() -> None:
    event = api_event("GET", "/openapi.json", tenant=None)
    document = json.loads(api.lambda_handler(event, LambdaContext())["body"])  # type: ignore[arg-type]
    new_agent = document["components"]["schemas"]["NewAgent"]
    assert "inviterName" not in new_agent["required"]
    field = new_agent["properties"]["inviterName"]
    assert "TenantNameClaim" in field["description"]
    assert {"type": "string", "maxLength": 100, "minLength": 1} in field["anyOf"]
