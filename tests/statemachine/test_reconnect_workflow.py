"""Reconnecting a mailbox that connected once, through the real workflow (the ASL file, moto, the Exchange
simulator): the agent keeps its id and settings, no autodiscovery runs again, and it ends verified."""

from __future__ import annotations

from devstack.exchange_sim.scenarios import SCENARIOS_BY_NAME as S
from devstack.exchange_sim.simulator import ExchangeSimulator
from onboarding.agents.models import AgentStatus, Attr
from onboarding.invites.models import ReconnectRequested
from onboarding.invites.reconnect import (
    ReconnectPolicy,
    ReconnectPurpose,
    deliver_reconnect,
    request_reconnect,
)
from onboarding.invites.tokens import token_hash
from tests.conftest import stored_secrets
from tests.invite_helpers import BASE_URL, emails, token_of
from tests.statemachine.conftest import Workflow

PROBLEM = {Attr.CHECK_PROBLEM: "auth_failed", Attr.PROBLEM_SINCE: "2026-03-03T08:00:00.000Z"}


def _connected(workflow: Workflow, scenario_name: str = "autodiscover_domain") -> str:
    scenario = S[scenario_name]
    agent_id = workflow.add_invited_agent(scenario.email)
    execution = workflow.connect(
        agent_id, scenario.password, username=scenario.username, server=scenario.server
    )
    assert workflow.wait_for_end(execution)["status"] == "SUCCEEDED"
    return agent_id


def _reconnect_link(workflow: Workflow, agent_id: str) -> str:
    """The agent's server refused the stored password (as a check leaves it), and its reconnect email went out:
    the connect page will keep that link's hash on the agent."""
    workflow.repo.transition(
        "demo", agent_id, AgentStatus.NEEDS_RECONNECT, reason="auth_failed", set_attributes=PROBLEM
    )
    asked = request_reconnect(
        workflow.repo, "demo", agent_id, purpose=ReconnectPurpose.RECONNECT, policy=ReconnectPolicy()
    )
    deliver_reconnect(
        ReconnectRequested(tenant_id="demo", agent_id=agent_id, reconnect_version=asked.reconnect_version),
        repo=workflow.repo,
        invites=workflow.invites,
        mailer=workflow.mailer,
        public_base_url=BASE_URL,
    )
    token = token_of(emails()[-1])
    workflow.invite_hashes[agent_id] = token_hash(token)
    return token


def test_a_reconnect_keeps_the_agent_and_its_settings_and_ends_verified_without_autodiscovery(
    workflow: Workflow, exchange_sim: ExchangeSimulator
) -> None:
    # Given a mailbox that connected (found by autodiscovery) and later needed reconnecting
    scenario = S["autodiscover_domain"]
    agent_id = _connected(workflow)
    before = workflow.repo.get_item("demo", agent_id) or {}
    _reconnect_link(workflow, agent_id)
    exchange_sim.reset_observations()
    # When the owner enters the (new) password on the reconnect page: the settings that worked are kept
    execution = workflow.connect(agent_id, scenario.password)
    # Then the same agent ends verified through the workflow, with the settings it had
    assert workflow.wait_for_end(execution)["status"] == "SUCCEEDED"
    after = workflow.repo.get_item("demo", agent_id) or {}
    assert (after["status"], after["agentId"], after["createdAt"]) == (
        "verified",
        agent_id,
        before["createdAt"],
    )
    assert (after["ewsUrl"], after["authType"], after[Attr.USERNAME]) == (
        before["ewsUrl"],
        before["authType"],
        scenario.username,
    )
    assert after[Attr.ATTEMPT] == before[Attr.ATTEMPT] + 1
    # and no autodiscovery ran again: only EWS was asked
    paths = [seen.path.lower() for seen in exchange_sim.requests_seen]
    assert paths
    assert not [path for path in paths if "autodiscover" in path]
    # The reconnect link is used up; the problem is cleared, its reminders count from zero, and the mailbox is
    # back on the check schedule
    invite = workflow.invite_of(agent_id)
    assert invite is not None
    assert invite.used_at is not None
    assert Attr.CHECK_PROBLEM not in after
    assert after[Attr.RECONNECT_EMAILS] == 0
    assert after[Attr.CHECK_STATE] == "ok"
    assert after[Attr.CHECK_DUE_AT] > after["updatedAt"]


def test_a_wrong_new_password_is_tried_once_counted_on_the_link_and_the_owner_can_retry(
    workflow: Workflow, exchange_sim: ExchangeSimulator
) -> None:
    scenario = S["autodiscover_domain"]
    agent_id = _connected(workflow)
    _reconnect_link(workflow, agent_id)
    exchange_sim.reset_observations()
    # When the owner enters a wrong password
    execution = workflow.connect(agent_id, "Not-The-Password-0")
    workflow.wait_for_end(execution)
    # Then the server saw it once, the attempt failed, nothing is kept, and the link counted it
    assert len([a for a in exchange_sim.auth_attempts if not a.ok]) == 1
    item = workflow.repo.get_item("demo", agent_id) or {}
    assert (item["status"], item["statusReason"]) == ("failed", "auth_failed")
    assert stored_secrets(agent_id) == []
    invite = workflow.invite_of(agent_id)
    assert invite is not None
    assert (invite.failed_attempts, invite.used_at) == (1, None)
    # and with the right one, the same link reconnects the mailbox
    execution = workflow.connect(agent_id, scenario.password)
    assert workflow.wait_for_end(execution)["status"] == "SUCCEEDED"
    assert (workflow.repo.get_item("demo", agent_id) or {})["status"] == "verified"
