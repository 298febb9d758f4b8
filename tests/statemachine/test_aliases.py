"""The workflow is started through its alias, as deployed (SAM's AutoPublishAlias): a start runs the version
the alias points at, and an execution keeps its version to the end when a deploy moves the alias
(devstack/sfn_aliases.py plays Step Functions' rules on moto)."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from devstack import sfn_aliases
from devstack import template as tpl

ROLE = "arn:aws:iam::123456789012:role/state-machine"


def _definition(result: str, wait_seconds: int = 0) -> str:
    states: dict[str, Any] = {"Answer": {"Type": "Pass", "Result": {"version": result}, "End": True}}
    if wait_seconds:
        states = {"Hold": {"Type": "Wait", "Seconds": wait_seconds, "Next": "Answer"}, **states}
    return json.dumps({"StartAt": next(iter(states)), "States": states})


def _finished(sfn: Any, execution_arn: str) -> dict[str, Any]:
    for _ in range(600):  # bounded: until the execution ends, whatever the machine's speed
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError(f"{execution_arn} still running")


@pytest.fixture
def sfn(moto_aws_sfn: None) -> Any:
    return boto3.client("stepfunctions")


def _deploy(sfn: Any, arn: str | None, definition: str) -> str:
    """What `sam deploy` does with AutoPublishAlias: create or update, publish a version, move `live`."""
    if arn is None:
        created = sfn.create_state_machine(
            name="aliased", definition=definition, roleArn=ROLE, type="STANDARD", publish=True
        )
        arn, version = created["stateMachineArn"], created["stateMachineVersionArn"]
    else:
        version = sfn.update_state_machine(stateMachineArn=arn, definition=definition, publish=True)[
            "stateMachineVersionArn"
        ]
    sfn_aliases.point_alias(sfn, arn, "live", version)
    return str(arn)


def test_a_start_through_the_alias_runs_its_version_and_keeps_it_across_a_deploy(sfn: Any) -> None:
    # Given version 1 behind `live`, which holds a moment before answering
    arn = _deploy(sfn, None, _definition("v1", wait_seconds=1))
    # When an execution starts through the alias, and a deploy then moves the alias to version 2
    first = sfn.start_execution(stateMachineArn=f"{arn}:live", name="first", input="{}")
    _deploy(sfn, arn, _definition("v2"))
    second = sfn.start_execution(stateMachineArn=f"{arn}:live", name="second", input="{}")
    # Then each ran the version the alias pointed at when it started, named under the state machine itself
    assert first["executionArn"] == arn.replace(":stateMachine:", ":execution:") + ":first"
    assert json.loads(_finished(sfn, first["executionArn"])["output"]) == {"version": "v1"}
    assert json.loads(_finished(sfn, second["executionArn"])["output"]) == {"version": "v2"}


def test_an_alias_that_does_not_exist_is_refused(sfn: Any) -> None:
    arn = _deploy(sfn, None, _definition("v1"))
    with pytest.raises(sfn.exceptions.ResourceNotFound):
        sfn.start_execution(stateMachineArn=f"{arn}:beta", input="{}")


def test_the_templates_workflow_is_published_behind_its_alias(sfn: Any) -> None:
    refs = {"VerifyMailboxFunction.Arn": tpl.function_arn("test-VerifyMailboxFunction")}
    arn = tpl.create_state_machine(sfn, "VerifyMailboxStateMachine", refs, name="verify-mailbox")
    (alias,) = sfn.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"]
    assert alias["stateMachineAliasArn"] == f"{arn}:live"
    assert tpl.state_machine_refs("VerifyMailboxStateMachine", arn)["VerifyMailboxStateMachineAliaslive"] == (
        f"{arn}:live"
    )
