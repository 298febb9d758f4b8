"""The verification workflow for a Microsoft 365 mailbox (method graph): the ASL file executed by moto,
its verify task redeeming the stored refresh token and asking Graph (the simulator)."""

from __future__ import annotations

import json

import boto3
import pytest
from pydantic import SecretStr

from devstack.identity_sim import IdentitySimulator
from onboarding.agents.models import AgentStatus, Attr
from onboarding.m365.oauth import OAuthClient
from tests.conftest import TABLE_NAME, stored_secrets
from tests.m365_fixtures import REDIRECT_URI, Person, point_functions_at, production_config
from tests.statemachine.conftest import Workflow


@pytest.fixture
def m365_workflow(
    workflow: Workflow,
    identity_sim: IdentitySimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Workflow:
    point_functions_at(identity_sim, monkeypatch, GRAPH_BUDGET="5")
    return workflow


def refresh_token_for(sim: IdentitySimulator, address: str) -> SecretStr:
    """What the connect page's callback obtained when `address` signed in."""
    config = production_config(sim, "arn:aws:secretsmanager:us-east-1:123456789012:secret:x")
    oauth = OAuthClient(config, lambda: sim.client_secret)
    flow = oauth.start(login_hint=address, redirect_uri=REDIRECT_URI)
    return oauth.redeem(flow, Person(sim).sign_in(flow["auth_uri"], address)).refresh_token


def connect_with_microsoft(workflow: Workflow, agent_id: str, refresh_token: SecretStr) -> str:
    """What the callback does: connecting with method graph, the refresh token stored, the workflow started."""
    workflow.repo.transition(
        "demo",
        agent_id,
        AgentStatus.CONNECTING,
        set_attributes={
            Attr.ATTEMPT: 1,
            Attr.ROUNDS: 0,
            Attr.VERIFY_METHOD: "graph",
            **workflow.connected_with_invite(agent_id),
        },
    )
    workflow.credentials.put("demo", agent_id, refresh_token, purpose="refresh_token")
    execution = workflow.sfn.start_execution(
        stateMachineArn=workflow.arn,
        name=f"{agent_id}-1",
        input=json.dumps(
            {
                "tenantId": "demo",
                "agentId": agent_id,
                "attempt": 1,
                "settingsTimeoutSeconds": 600,
                "method": "graph",
            }
        ),
    )
    return str(execution["executionArn"])


def test_a_microsoft_365_mailbox_is_verified_over_graph_without_autodiscovery(
    m365_workflow: Workflow,
    identity_sim: IdentitySimulator,
) -> None:
    agent_id = m365_workflow.add_invited_agent("mia@m365.test")
    refresh_token = refresh_token_for(identity_sim, "mia@m365.test")
    arn = connect_with_microsoft(m365_workflow, agent_id, refresh_token)

    described = m365_workflow.wait_for_end(arn)
    item = m365_workflow.wait_for_status(agent_id, {AgentStatus.VERIFIED, AgentStatus.FAILED})

    assert described["status"] == "SUCCEEDED"
    assert item["status"] == "verified", item.get("statusReason")
    assert item[Attr.INBOX_COUNT] == 12
    assert item[Attr.VERIFY_METHOD] == "graph"
    invite = m365_workflow.invite_of(agent_id)  # the link used up with the verification
    assert invite is not None
    assert invite.used_at is not None
    history = m365_workflow.history(arn)
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert "Autodiscover" not in entered
    assert entered[:2] == ["Sign-in Method?", "Verify Mailbox"]
    # The verification asked Graph; the refresh token never appears in the execution's history
    graph_paths = [r.path for r in identity_sim.requests_seen if r.service == "graph"]
    assert graph_paths == ["/v1.0/me", "/v1.0/me/mailFolders/inbox"]
    stored = m365_workflow.credentials.get("demo", agent_id, purpose="refresh_token").get_secret_value()
    for token in {refresh_token.get_secret_value(), stored}:
        assert token not in json.dumps(history, default=str)
        assert token not in str(boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"])


@pytest.mark.parametrize(
    ("invited", "signed_in", "reason"),
    [
        ("mia@m365.test", "olivia@m365.test", "m365_wrong_account"),
        ("ava@m365.test", "ava@m365.test", "m365_no_mailbox"),
        ("ethan@m365.test", "ethan@m365.test", "m365_access_denied"),
        ("henry@m365.test", "henry@m365.test", "m365_unavailable"),
    ],
)
def test_graph_verdicts_are_recorded_as_failures_and_the_token_is_deleted(
    m365_workflow: Workflow,
    identity_sim: IdentitySimulator,
    invited: str,
    signed_in: str,
    reason: str,
) -> None:
    agent_id = m365_workflow.add_invited_agent(invited)
    arn = connect_with_microsoft(m365_workflow, agent_id, refresh_token_for(identity_sim, signed_in))
    m365_workflow.wait_for_end(arn)
    item = m365_workflow.wait_for_status(agent_id, {AgentStatus.VERIFIED, AgentStatus.FAILED})
    assert (item["status"], item.get("statusReason")) == ("failed", reason)
    if reason == "m365_wrong_account":
        assert item[Attr.M365_SIGNED_IN_AS] == "olivia.hart@m365.test"
    assert stored_secrets(agent_id) == []  # a token that did not connect is not kept


def test_a_revoked_refresh_token_is_its_own_verdict(
    m365_workflow: Workflow,
    identity_sim: IdentitySimulator,
) -> None:
    agent_id = m365_workflow.add_invited_agent("mia@m365.test")
    refresh_token = refresh_token_for(identity_sim, "mia@m365.test")
    identity_sim.revoke_refresh_tokens("mia@m365.test")
    arn = connect_with_microsoft(m365_workflow, agent_id, refresh_token)
    m365_workflow.wait_for_end(arn)
    item = m365_workflow.wait_for_status(agent_id, {AgentStatus.VERIFIED, AgentStatus.FAILED})
    assert (item["status"], item.get("statusReason")) == ("failed", "m365_token_rejected")


def test_an_exchange_execution_without_method_still_autodiscovers(m365_workflow: Workflow) -> None:
    # Executions started before this change carry no `method`: the Choice sends them to autodiscovery.
    agent_id = m365_workflow.add_invited_agent("nobody@unknown-domain.test")
    arn = m365_workflow.connect(agent_id, "pw")
    m365_workflow.wait_for_status(agent_id, {AgentStatus.NEEDS_SETTINGS, AgentStatus.FAILED})
    entered = [
        e["stateEnteredEventDetails"]["name"]
        for e in m365_workflow.history(arn)
        if "stateEnteredEventDetails" in e
    ]
    assert entered[:2] == ["Sign-in Method?", "Autodiscover"]
