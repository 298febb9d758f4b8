"""Task inputs stay readable across one version: every payload the previous ASL (statemachine/ as it was
before this one, kept in tests/statemachine/previous/ from git history) sends the task function is valid
for the current `TaskInput`, and the current ASL still runs executions started with the previous input.

On AWS an execution keeps the state machine version it started with, and each version runs the function
version published with it (template.yaml: `!Ref VerifyMailboxFunction.Version`), so payloads only ever
reach the code that was deployed with them; this test is the guard for the day that pinning is dropped or
bypassed. `TaskInput` keeps refusing unknown fields: a payload field is an instruction to the step
(`failure`, `code`, `taskToken`), and one the code does not know would be dropped silently — the step would
do something other than what the workflow asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from onboarding.verification.steps import TaskInput

HERE = Path(__file__).resolve().parent
CURRENT = json.loads((HERE.parents[1] / "statemachine" / "verify_mailbox.asl.json").read_text())
PREVIOUS = json.loads((HERE / "previous" / "verify_mailbox.asl.json").read_text())
# A state's input as the previous version built it (before `method` existed), with what Catch and Pass
# states add on the way.
STATE_INPUT = {
    "tenantId": "demo",
    "agentId": "01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "attempt": 2,
    "settingsTimeoutSeconds": 600,
    "reason": "autodiscover_failed",
    "failure": {"Error": "States.TaskFailed", "Cause": "boom"},
}
CONTEXT = {"Task": {"Token": "token-1"}}


def _path(path: str, document: dict[str, Any]) -> Any:
    value: Any = document
    for part in path.lstrip("$").strip(".").split("."):
        value = value[part]
    return value


def payload(template: dict[str, Any]) -> dict[str, Any]:
    """The Payload a Task state's Parameters build from STATE_INPUT (JSONPath `$.x` and `$$.Task.Token`)."""
    built = {}
    for key, value in template.items():
        if key.endswith(".$"):
            source = CONTEXT if value.startswith("$$") else STATE_INPUT
            built[key[:-2]] = _path(value[1:] if value.startswith("$$") else value, source)
        else:
            built[key] = value
    return built


def _payloads(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: payload(state["Parameters"]["Payload"])
        for name, state in asl["States"].items()
        if state["Type"] == "Task" and "Payload" in state.get("Parameters", {})
    }


@pytest.mark.parametrize("state", _payloads(PREVIOUS))
def test_each_payload_of_the_previous_version_is_a_valid_task_input(state: str) -> None:
    task = TaskInput.model_validate(_payloads(PREVIOUS)[state])
    assert (task.tenant_id, task.agent_id, task.attempt) == ("demo", STATE_INPUT["agentId"], 2)


def test_the_previous_version_sends_the_same_actions() -> None:
    actions = {p["action"] for p in _payloads(PREVIOUS).values()}
    assert actions == {p["action"] for p in _payloads(CURRENT).values()}


def test_the_current_machine_routes_a_previous_input_without_method_to_autodiscovery() -> None:
    choice = CURRENT["States"][CURRENT["StartAt"]]
    (rule,) = choice["Choices"]
    assert {"Variable": "$.method", "IsPresent": True} in rule["And"]  # absent: not graph
    assert choice["Default"] == "Autodiscover"


def test_an_unknown_field_is_refused_not_dropped() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TaskInput.model_validate({**_payloads(PREVIOUS)["Verify Mailbox"], "force": True})
