"""The workflow's paths, from the ASL file template.yaml deploys, end to end against the simulator."""

from __future__ import annotations

import json

import boto3

from devstack.exchange_sim.scenarios import SCENARIOS_BY_NAME as S
from onboarding.agents.models import AgentStatus
from tests.conftest import TABLE_NAME, stored_secrets
from tests.statemachine.conftest import Workflow

DONE = {AgentStatus.VERIFIED, AgentStatus.FAILED}


def test_a_mailbox_that_autodiscovers_ends_verified_with_its_settings(workflow: Workflow) -> None:
    scenario = S["autodiscover_domain"]
    agent_id = workflow.add_invited_agent(scenario.email)
    execution = workflow.connect(agent_id, scenario.password, username=scenario.username)
    assert workflow.wait_for_end(execution)["status"] == "SUCCEEDED"
    item = workflow.repo.get_item("demo", agent_id) or {}
    assert item["status"] == "verified"
    assert item["verifiedAt"]
    assert item["ewsUrl"].startswith("https://")
    assert item["inboxItemCount"] == scenario.inbox_count
    assert "taskToken" not in item
    # The link has done its job: used up with the verification (consumed with a check of its agent).
    invite = workflow.invite_of(agent_id)
    assert invite is not None
    assert invite.used_at is not None


def test_without_autodiscover_the_workflow_asks_for_settings_then_verifies(workflow: Workflow) -> None:
    scenario = S["manual_domain_user"]
    agent_id = workflow.add_invited_agent(scenario.email)
    execution = workflow.connect(agent_id, scenario.password)
    waiting = workflow.wait_for_status(agent_id, {AgentStatus.NEEDS_SETTINGS})
    assert waiting["statusReason"] == "autodiscover_failed"
    assert waiting["taskToken"]
    workflow.send_settings(agent_id, server=str(scenario.server), username=scenario.username)
    assert workflow.wait_for_end(execution)["status"] == "SUCCEEDED"
    assert (workflow.repo.get_item("demo", agent_id) or {})["status"] == "verified"


def test_settings_that_fail_are_asked_again_and_then_succeed(workflow: Workflow) -> None:
    scenario = S["manual_upn"]
    agent_id = workflow.add_invited_agent(scenario.email)
    execution = workflow.connect(agent_id, scenario.password)
    workflow.wait_for_status(agent_id, {AgentStatus.NEEDS_SETTINGS})
    workflow.send_settings(agent_id, server="mail.nowhere.test", username=scenario.username)
    again = workflow.wait_for_status(agent_id, {AgentStatus.NEEDS_SETTINGS, *DONE})
    assert (again["status"], again["statusReason"]) == ("needs_settings", "unreachable")
    workflow.send_settings(agent_id, server=str(scenario.server), username=scenario.username)
    assert workflow.wait_for_end(execution)["status"] == "SUCCEEDED"
    assert (workflow.repo.get_item("demo", agent_id) or {})["status"] == "verified"


def test_a_settings_request_nobody_answers_times_out_as_failed(workflow: Workflow) -> None:
    scenario = S["manual_domain_user"]
    agent_id = workflow.add_invited_agent(scenario.email)
    execution = workflow.connect(agent_id, scenario.password, settings_timeout=1)
    workflow.wait_for_end(execution)
    item = workflow.repo.get_item("demo", agent_id) or {}
    assert (item["status"], item["statusReason"]) == ("failed", "settings_timeout")
    assert "taskToken" not in item


def test_a_wrong_password_fails_with_its_diagnosis(workflow: Workflow) -> None:
    scenario = S["wrong_password"]
    agent_id = workflow.add_invited_agent(scenario.email)
    execution = workflow.connect(
        agent_id, scenario.password, username=scenario.username, server=scenario.server
    )
    workflow.wait_for_end(execution)
    item = workflow.repo.get_item("demo", agent_id) or {}
    assert (item["status"], item["statusReason"]) == ("failed", "auth_failed")
    # A password that did not connect is not kept; it counts against the link, which stays usable.
    assert stored_secrets(agent_id) == []
    invite = workflow.invite_of(agent_id)
    assert invite is not None
    assert (invite.failed_attempts, invite.used_at) == (1, None)


def test_a_login_in_doubt_is_excused_once_on_the_link_then_counted(workflow: Workflow) -> None:
    """Maya's right password refused with her address as the login, her server naming its Windows domain:
    the first such refusal on a link does not count towards its lock (it may be the login form, not the
    password), a second one does; the verification step takes the excuse as VerifyMailboxFunction."""
    scenario = S["netbios_domain_hint"]
    agent_id = workflow.add_invited_agent(scenario.email)
    # When the owner connects with the email address as the login, twice
    for expected in (0, 1):
        execution = workflow.connect(agent_id, scenario.password, server=scenario.server)
        workflow.wait_for_end(execution)
        item = workflow.repo.get_item("demo", agent_id) or {}
        assert (item["status"], item["statusReason"]) == ("failed", "auth_failed")
        # Then the first refusal is excused, the second counted
        invite = workflow.invite_of(agent_id)
        assert invite is not None
        assert (invite.failed_attempts, invite.used_at) == (expected, None)


def test_a_wrong_password_through_a_link_already_used_is_not_counted_against_it(workflow: Workflow) -> None:
    # Given an agent whose link was used up already (an earlier connection verified with it)
    scenario = S["wrong_password"]
    agent_id = workflow.add_invited_agent(scenario.email)
    invite = workflow.invite_of(agent_id)
    assert invite is not None
    used = workflow.invites.consume(invite, at=invite.created_at, max_failed_attempts=10)
    # When a connection through it fails with a wrong password
    execution = workflow.connect(
        agent_id, scenario.password, username=scenario.username, server=scenario.server
    )
    workflow.wait_for_end(execution)
    # Then the failure is recorded, and the used link is left as it was (the count is refused, then read)
    item = workflow.repo.get_item("demo", agent_id) or {}
    assert (item["status"], item["statusReason"]) == ("failed", "auth_failed")
    after = workflow.invite_of(agent_id)
    assert after is not None
    assert (after.failed_attempts, after.used_at) == (0, used.used_at)


def test_a_failing_lambda_task_ends_failed_not_stuck_connecting(workflow: Workflow) -> None:
    """No password stored: the task raises, the Catch records the failure."""
    agent_id = workflow.add_invited_agent("alice@contoso.test")
    execution = workflow.connect(agent_id, password=None)
    workflow.wait_for_end(execution)
    item = workflow.repo.get_item("demo", agent_id) or {}
    assert (item["status"], item["statusReason"]) == ("failed", "internal_error")


def test_a_failed_agent_can_retry_and_succeed(workflow: Workflow) -> None:
    scenario = S["autodiscover_subdomain"]
    agent_id = workflow.add_invited_agent(scenario.email)
    first = workflow.connect(agent_id, "Wrong-Password-1")
    workflow.wait_for_end(first)
    assert (workflow.repo.get_item("demo", agent_id) or {})["statusReason"] == "auth_failed"
    second = workflow.connect(agent_id, scenario.password)
    assert workflow.wait_for_end(second)["status"] == "SUCCEEDED"
    assert (workflow.repo.get_item("demo", agent_id) or {})["status"] == "verified"
    # The password that worked is kept: monitoring the mailbox needs it.
    assert workflow.credentials.get("demo", agent_id).get_secret_value() == scenario.password


def test_the_password_never_leaves_the_credential_store(workflow: Workflow, capsys: object) -> None:
    scenario = S["manual_domain_user"]
    agent_id = workflow.add_invited_agent(scenario.email)
    execution = workflow.connect(agent_id, scenario.password)
    workflow.wait_for_status(agent_id, {AgentStatus.NEEDS_SETTINGS})
    workflow.send_settings(agent_id, server=str(scenario.server), username=scenario.username)
    described = workflow.wait_for_end(execution)
    history = workflow.history(execution)
    table = boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
    for where, text in {
        "execution input/output": json.dumps(described, default=str),
        "execution history": json.dumps(history, default=str),
        "DynamoDB": json.dumps(table),
        "logs": capsys.readouterr().out + capsys.readouterr().err,  # type: ignore[attr-defined]
    }.items():
        assert scenario.password not in text, f"the password appears in {where}"
    assert len(history) > 5


def test_removing_an_agent_that_waits_for_settings_stops_the_workflow_and_deletes_the_password(
    workflow: Workflow,
) -> None:
    from onboarding.agents import manage as agents
    from onboarding.core import aws

    scenario = S["manual_domain_user"]
    agent_id = workflow.add_invited_agent(scenario.email)
    execution = workflow.connect(agent_id, scenario.password)
    waiting = workflow.wait_for_status(agent_id, {AgentStatus.NEEDS_SETTINGS})
    stops: list[str] = []
    aws.client("stepfunctions").meta.events.register(
        "provide-client-params.sfn.StopExecution", lambda params, **_: stops.append(params["executionArn"])
    )
    assert agents.remove_agent(
        workflow.repo,
        "demo",
        agent_id,
        agents.Cleanup(workflow.credentials, aws.client("stepfunctions"), workflow.arn),
    )
    assert stops == [execution]
    assert workflow.repo.get_item("demo", agent_id) is None
    assert stored_secrets(agent_id) == []
    # AWS aborts the waiting execution at once; moto 5.2.5 only notices the stop when the waiting task
    # returns, so wake it: the execution then ends ABORTED and writes nothing.
    workflow.sfn.send_task_success(taskToken=waiting["taskToken"], output="{}")
    assert workflow.wait_for_end(execution)["status"] == "ABORTED"
    assert workflow.repo.get_item("demo", agent_id) is None
