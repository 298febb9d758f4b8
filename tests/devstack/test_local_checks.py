"""The health checks run in the local stack as on AWS: the scheduled rule invokes DispatchChecksFunction, its
messages go through ChecksQueue to CheckMailboxFunction (the SQS event source), under each function's own
IAM policy. A connected mailbox whose password the owner changed loses its tick and its owner gets one
reconnect email."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.conftest import RunningStack

MAILBOX, PASSWORD = "mona@lucerne.test", "Mona-Pass-24"
NONCE = re.compile(r'name="nonce"\s+value="([^"]+)"')


def _until(what: str, probe: Any, budget: float = 90) -> Any:
    """`probe()` once it returns something truthy (a budget no loaded machine reaches), else fail."""
    deadline = time.monotonic() + budget
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {budget} s: {what}")
        time.sleep(0.2)


def _control(base: str, action: str, target: str, **values: str) -> None:
    answer = requests.post(
        f"{base}/_local/simulators/{action}", json={"target": target, **values}, timeout=10
    )
    assert answer.status_code == 200, answer.text


def _emails(base: str, to: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{base}/_local/emails.json", params={"to": to}, timeout=10).json())


def _agents_repo(stack: RunningStack) -> Any:
    import boto3

    from onboarding.agents.store import DynamoAgentRepository

    ddb = boto3.client(
        "dynamodb",
        endpoint_url=stack.moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    (table,) = [name for name in ddb.list_tables()["TableNames"] if name.endswith("-AgentsTable")]
    return DynamoAgentRepository(table, ddb)


@pytest.fixture
def mona(local_stack: RunningStack) -> Iterator[str]:
    """Mona's mailbox; her password as the scenarios say again afterwards (the stack is the session's)."""
    yield MAILBOX
    _control(local_stack.base_url, "password", MAILBOX, value=PASSWORD)


def test_the_schedule_finds_a_changed_password_and_the_owner_is_asked_to_reconnect(
    local_stack: RunningStack, mona: str
) -> None:
    from onboarding.agents.models import AgentStatus, Attr
    from onboarding.core.times import iso

    base = local_stack.base_url
    headers = {"Authorization": f"Bearer {local_stack.token('checks')}"}
    agent_url = ""

    def status() -> str:
        return str(requests.get(agent_url, headers=headers, timeout=10).json()["status"])

    # Given Mona's mailbox connected (invite, her password on the connect page, the workflow verifies it)
    agent = requests.post(
        f"{base}/agents",
        json={"name": "Mona", "email": mona, "type": "ms_exchange"},
        headers=headers,
        timeout=10,
    ).json()
    agent_url = f"{base}/agents/{agent['agentId']}"
    # (the email shows once SES took it, a moment before the sender records it: the link works from `invited`)
    _until("invited", lambda: status() == "invited")
    (invite,) = _until("the invite", lambda: _emails(base, mona))
    path = invite["link"].removeprefix(base)
    nonce = NONCE.search(requests.get(f"{base}{path}", timeout=30).text)
    assert nonce is not None
    posted = requests.post(
        f"{base}{path}",
        data={"email": mona, "password": PASSWORD, "nonce": nonce.group(1)},
        headers={"Origin": base},
        allow_redirects=False,
        timeout=30,
    )
    assert posted.status_code == 303
    _until("verified", lambda: status() == "verified")
    # ... and the scheduled rule's target is the dispatcher, the queue's consumer the checker
    (rule,) = requests.get(f"{base}/_local/schedules", timeout=10).json()
    assert (rule["function"], rule["expression"]) == ("DispatchChecksFunction", "rate(5 minutes)")

    # When she changes her password on the server, and her check falls due (the interval is hours: the test
    # moves her due time, as time would)
    _control(base, "password", mona, value="Mona-New-Pass-25")
    _agents_repo(local_stack).update_attributes(
        "checks",
        agent["agentId"],
        {Attr.CHECK_DUE_AT: iso(datetime.now(UTC) - timedelta(seconds=1))},
        expected_status=AgentStatus.VERIFIED,
    )
    # ... and the schedule fires
    run = requests.post(
        f"{base}/_local/schedules/DispatchChecksFunction/run", headers={"Origin": base}, timeout=60
    )
    assert run.status_code == 200, run.text
    assert run.json()["result"]["sent"] >= 1  # her check went on the queue

    # Then the checker, fed by the queue, finds the password refused: the agent needs reconnecting
    _until("needs_reconnect", lambda: status() == "needs_reconnect")
    shown = requests.get(agent_url, headers=headers, timeout=10).json()
    assert shown["statusReason"] == "auth_failed"
    # And her owner gets one reconnect email, whose link opens the connect page in reconnect mode
    reconnect = _until("the reconnect email", lambda: _emails(base, mona)[:-1])  # newest first, invite last
    assert [e["subject"] for e in reconnect] == [
        f"Your mailbox {mona} stopped connecting: please reconnect it"
    ]
    page = requests.get(reconnect[0]["link"], timeout=30)
    assert page.status_code == 200
    assert "no longer accepts the password" in page.text


def test_a_foreign_origin_cannot_run_a_schedule(local_stack: RunningStack) -> None:
    answer = requests.post(
        f"{local_stack.base_url}/_local/schedules/DispatchChecksFunction/run",
        headers={"Origin": "https://evil.example"},
        timeout=10,
    )
    assert answer.status_code == 403
    assert (
        requests.post(f"{local_stack.base_url}/_local/schedules/NoSuchRule/run", timeout=10).status_code
        == 404
    )
