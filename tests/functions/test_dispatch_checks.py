"""DispatchChecksFunction, invoked as the schedule invokes it (a Scheduled Event), under its own IAM policy:
the due agents found on the ByCheckDue index (moto, the table from template.yaml) go on ChecksQueue, leased
once each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.dispatch_checks import app
from onboarding.agents.models import Agent, AgentStatus, Attr
from onboarding.agents.schedule import CHECK_SHARDS, iso, scheduled_attributes
from onboarding.agents.store import DynamoAgentRepository
from tests import lifecycle
from tests.checks_queue import ChecksQueue, create_checks_queues
from tests.conftest import LambdaContext, load_event

S = AgentStatus
LONG_AGO = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # scheduled then: due now


@pytest.fixture
def queue(moto_aws: None) -> ChecksQueue:
    return create_checks_queues()


def invoke(event: dict[str, Any]) -> dict[str, int]:
    return app.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]


def _verified(repo: DynamoAgentRepository, email: str, due: datetime) -> Agent:
    agent = lifecycle.add(repo, email=email)
    attributes = {**scheduled_attributes(agent.agent_id, LONG_AGO), Attr.CHECK_DUE_AT: iso(due)}
    return lifecycle.walk(repo, agent, S.VERIFIED, set_attributes=attributes)


def test_the_schedule_queues_each_due_agent_once_with_its_lease(
    repo: DynamoAgentRepository, queue: ChecksQueue
) -> None:
    # Given two connected agents whose check is due and one due only tomorrow
    due = [_verified(repo, f"due{i}@contoso.com", LONG_AGO) for i in range(2)]
    _verified(repo, "later@contoso.com", datetime.now(UTC) + timedelta(days=1))

    # When the schedule wakes the dispatcher twice (the second time finds them leased)
    first = invoke(load_event("scheduled_event.json"))
    second = invoke(load_event("scheduled_event.json"))

    # Then the due ones are on the queue, once each, each with the lease now on its agent
    assert (first["leased"], first["sent"], first["failed"]) == (2, 2, 0)
    assert (second["leased"], second["sent"]) == (0, 0)
    bodies = queue.bodies()
    assert sorted(b["agentId"] for b in bodies) == sorted(a.agent_id for a in due)
    for body in bodies:
        record = repo.get_record(body["tenantId"], body["agentId"])
        assert record is not None
        assert body["cause"] == "schedule"
        assert body["lease"] == record.health.check_lease
    # And it read only the index: one query per shard (a page each), never a scan
    assert first["queries"] == CHECK_SHARDS


def test_nothing_due_sends_nothing(repo: DynamoAgentRepository, queue: ChecksQueue) -> None:
    _verified(repo, "later@contoso.com", datetime.now(UTC) + timedelta(hours=3))

    report = invoke(load_event("scheduled_event.json"))

    assert (report["leased"], report["sent"]) == (0, 0)
    assert queue.bodies() == []
