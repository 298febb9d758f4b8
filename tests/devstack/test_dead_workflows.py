"""A workflow that dies does not leave its agent waiting: the local stack emits Step Functions' own
"Execution Status Change" event when an execution ends FAILED, TIMED_OUT or ABORTED, and the function the
template's EventBridge rule names settles the agent (failed, secrets deleted), as on AWS."""

from __future__ import annotations

import time
from typing import Any

import boto3
import requests

from tests.conftest import RunningStack
from tests.devstack.test_restarts import _form_post, _status


def _moto(stack: RunningStack, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack.moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _emails_to(base: str, address: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{base}/_local/emails.json", params={"to": address}, timeout=5).json())


def _new_emails(base: str, address: str, earlier: set[str]) -> list[dict[str, Any]]:
    """The emails to `address` whose link is not among `earlier`, once there is one (20 s at most)."""
    deadline = time.monotonic() + 20
    while True:
        found = [e for e in _emails_to(base, address) if e["link"] not in earlier]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _secrets_of(stack: RunningStack, agent_id: str) -> list[dict[str, Any]]:
    items = _moto(stack, "dynamodb").scan(TableName="local-CredentialsTable")["Items"]
    return [item for item in items if f"#{agent_id}#" in item["sk"]["S"]]


def test_a_stopped_workflow_settles_its_agent_through_the_status_change_event(
    local_stack: RunningStack,
) -> None:
    # Given Erin's workflow waiting for her advanced settings (her domain has no autodiscover), her
    # password sealed in the credential store
    # (a tenant of its own: the session's stack is shared, and other tests invite Erin in `demo`)
    base = local_stack.base_url
    headers = {"Authorization": f"Bearer {local_stack.token('dead-workflows')}"}
    email = "erin@adatum.test"
    earlier = {e["link"] for e in _emails_to(base, email)}
    agent = requests.post(
        f"{base}/agents",
        json={"name": "Erin", "email": email, "type": "ms_exchange"},
        headers=headers,
        timeout=10,
    ).json()
    (sent,) = _new_emails(base, email, earlier)
    # the email shows as soon as SES took it, a moment before the sender records `invited`
    deadline = time.monotonic() + 20
    while requests.get(f"{base}/agents/{agent['agentId']}", headers=headers, timeout=10).json()["status"] == (
        "invite_pending"
    ):
        assert time.monotonic() < deadline, "the invite was never recorded as sent"
        time.sleep(0.1)
    token = sent["link"].rsplit("/", 1)[1]
    path = f"/connect/{token}"
    assert _form_post(base, path, path, {"email": email, "password": "Erin-Pass-5"}) == 303
    _status(base, token, "needs_settings")
    assert _secrets_of(local_stack, agent["agentId"])
    sfn = _moto(local_stack, "stepfunctions")
    (machine,) = [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]]
    execution_arn = f"{machine.replace(':stateMachine:', ':execution:')}:{agent['agentId']}-1"
    assert sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING"

    # When the execution dies without recording a verdict (stopped by hand: ABORTED)
    sfn.stop_execution(executionArn=execution_arn, error="Operator", cause="stopped by hand")

    # Then the agent ends failed with internal_error, and its secrets are gone
    deadline = time.monotonic() + 30
    while True:
        shown = requests.get(f"{base}/agents/{agent['agentId']}", headers=headers, timeout=10).json()
        if shown["status"] != "needs_settings" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (shown["status"], shown["statusReason"]) == ("failed", "internal_error")
    assert _secrets_of(local_stack, agent["agentId"]) == []
    # ... through Step Functions' event, delivered to the function the rule names
    delivered = requests.get(f"{base}/_local/events.json", timeout=10).json()
    ours = [d for d in delivered if d["event"]["detail"]["executionArn"] == execution_arn]
    assert [(d["function"], d["event"]["detail-type"], d["event"]["detail"]["status"]) for d in ours] == [
        ("local-WorkflowEventsFunction", "Step Functions Execution Status Change", "ABORTED")
    ]
