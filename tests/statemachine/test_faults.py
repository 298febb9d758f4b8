"""Faults injected mid-flow: every agent still ends in a defined state, nothing is lost."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse

from devstack.exchange_sim.scenarios import SCENARIOS_BY_NAME as S
from onboarding.agents.models import AgentStatus
from onboarding.core import aws
from tests.statemachine.conftest import Workflow


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def _throttle(request: Any) -> AWSResponse:
    body = json.dumps(
        {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "Rate exceeded"}
    ).encode()
    return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "ThrottlingException"}, _Raw(body))


def _inject(when: Callable[[Any], bool], times: int | None) -> list[int]:
    """Make the service's DynamoDB client answer ThrottlingException to matching requests (`times` of
    them, or all when None), at the HTTP layer, so botocore's own retries see it as they would on AWS."""
    seen = [0]

    def hook(request: Any, **_: Any) -> AWSResponse | None:
        if not when(request) or (times is not None and seen[0] >= times):
            return None
        seen[0] += 1
        return _throttle(request)

    aws.client("dynamodb").meta.events.register_first("before-send.dynamodb.UpdateItem", hook)
    return seen


def _verify_step_write(request: Any) -> bool:
    return b"inboxItemCount" in (request.body or b"")


def test_a_throttled_write_is_retried_and_the_mailbox_still_verifies(workflow: Workflow) -> None:
    scenario = S["autodiscover_subdomain"]
    agent_id = workflow.add_invited_agent(scenario.email)
    throttled = _inject(_verify_step_write, times=1)
    execution = workflow.connect(agent_id, scenario.password)
    assert workflow.wait_for_end(execution)["status"] == "SUCCEEDED"
    assert throttled[0] == 1
    assert (workflow.repo.get_item("demo", agent_id) or {})["status"] == AgentStatus.VERIFIED


def test_a_step_whose_writes_keep_failing_ends_failed_not_stuck_connecting(workflow: Workflow) -> None:
    scenario = S["autodiscover_subdomain"]
    agent_id = workflow.add_invited_agent(scenario.email)
    throttled = _inject(_verify_step_write, times=None)
    execution = workflow.connect(agent_id, scenario.password)
    workflow.wait_for_end(execution)
    item = workflow.repo.get_item("demo", agent_id) or {}
    assert throttled[0] >= 2  # botocore retried before the task gave up
    assert (item["status"], item["statusReason"]) == ("failed", "internal_error")


def test_the_state_machine_may_invoke_its_own_function_only(moto_aws_sfn: None) -> None:
    """Its role grants lambda:InvokeFunction on the verification function's exact ARN: a definition that
    names another function (here the dashboard API's) is refused by IAM before that function runs."""
    import boto3

    from devstack import template as tpl
    from devstack.lambdas import handlers_installed
    from devstack.runtime import runners_from_template

    runners = runners_from_template(prefix="test")
    sfn = boto3.client("stepfunctions")
    other = {"VerifyMailboxFunction.Arn": tpl.function_arn("test-AddAgentFunction")}
    arn = tpl.create_state_machine(sfn, "VerifyMailboxStateMachine", other, name="verify-mailbox")
    with handlers_installed(runners):
        execution = sfn.start_execution(
            stateMachineArn=arn,
            input=json.dumps(
                {"tenantId": "demo", "agentId": "a1", "attempt": 1, "settingsTimeoutSeconds": 60}
            ),
        )["executionArn"]
        # Its first task's invocation is refused (the retries and the catch that follow are refused too:
        # the test stops the execution once the first refusal is in its history)
        deadline = time.monotonic() + 60
        while "is not authorized" not in (history := _history(sfn, execution)):
            assert time.monotonic() < deadline, "no refusal in the execution's history"
            time.sleep(0.1)
        sfn.stop_execution(executionArn=execution)
    assert "User: arn:aws:sts::123456789012:assumed-role/test-VerifyMailboxStateMachineRole/" in history
    assert (
        "is not authorized to perform: lambda:InvokeFunction on resource: "
        "arn:aws:lambda:us-east-1:123456789012:function:test-AddAgentFunction" in history
    )
    assert "AccessDeniedException" in history
    assert runners["AddAgentFunction"].invocations == 0


def _history(sfn: Any, execution: str) -> str:
    return json.dumps(sfn.get_execution_history(executionArn=execution)["events"], default=str)
