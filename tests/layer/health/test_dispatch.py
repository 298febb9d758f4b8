"""The dispatcher: the due agents, found with queries of the ByCheckDue index only, leased once, queued."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from onboarding.agents.models import Agent, AgentStatus, Attr
from onboarding.agents.schedule import CHECK_SHARDS, first_due, iso, scheduled_attributes, shard_of
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core.ids import new_id
from onboarding.health.dispatch import Dispatcher, DueChecks
from onboarding.health.models import HealthPolicy
from tests import lifecycle
from tests.conftest import TABLE_NAME

S = AgentStatus
T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
INTERVAL = timedelta(hours=6)


def test_ten_thousand_agents_verified_at_once_are_spread_evenly_over_the_interval_and_shards() -> None:
    ids = [new_id() for _ in range(10_000)]

    hours = Counter(int((first_due(i, T0, INTERVAL) - T0) / timedelta(hours=1)) for i in ids)
    shards = Counter(shard_of(i) for i in ids)

    assert set(hours) == set(range(6))  # each due within the interval
    assert all(1500 <= n <= 1833 for n in hours.values()), hours  # 1667 each, within 10 %
    assert len(shards) == CHECK_SHARDS
    assert all(500 <= n <= 750 for n in shards.values()), shards  # 625 each


def _scheduled(repo: DynamoAgentRepository, n: int, *, email: str = "a{}@contoso.com") -> list[Agent]:
    agents = []
    for i in range(n):
        agent = lifecycle.add(repo, email=email.format(i))
        agents.append(
            lifecycle.walk(
                repo, agent, S.VERIFIED, set_attributes=scheduled_attributes(agent.agent_id, T0, INTERVAL)
            )
        )
    return agents


class Calls:
    """Every DynamoDB operation the dispatcher's client makes (a botocore event hook)."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        client.meta.events.register("before-call.dynamodb.*", self._seen)

    def _seen(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)


def test_the_due_agents_are_found_with_queries_only_and_each_is_queued_once(
    repo: DynamoAgentRepository,
) -> None:
    agents = _scheduled(repo, 40)
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="checks")["QueueUrl"]
    ddb = boto3.client("dynamodb")
    calls = Calls(ddb)
    now = T0 + INTERVAL / 2
    due = {a.agent_id for a in agents if first_due(a.agent_id, T0, INTERVAL) <= now}
    dispatcher = Dispatcher(DueChecks(TABLE_NAME, ddb), sqs, queue, HealthPolicy(), clock=lambda: now)

    first = dispatcher.dispatch()
    again = dispatcher.dispatch()  # the same minute: all leased already

    assert 0 < len(due) < 40
    assert set(calls.names) == {"Query", "UpdateItem"}  # no Scan, no read of a whole item
    assert calls.names.count("UpdateItem") == len(due)  # one lease per due agent
    assert (first.read, first.leased, first.sent, again.leased) == (len(due), len(due), len(due), 0)
    bodies = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        for m in batch:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    assert {b["agentId"] for b in bodies} == due
    record = repo.get_record("demo", bodies[0]["agentId"])
    assert record is not None
    assert record.health.check_lease == bodies[0]["lease"]
    assert record.health.check_due_at == iso(now + HealthPolicy().lease_timeout)


def test_agents_out_of_the_schedule_are_not_in_the_index(repo: DynamoAgentRepository) -> None:
    (agent,) = _scheduled(repo, 1)
    lifecycle.add_at(repo, S.INVITED, email="b@contoso.com")
    repo.update_attributes(
        "demo",
        agent.agent_id,
        {},
        expected_status=S.VERIFIED,
        remove_attributes=(Attr.CHECK_SHARD, Attr.CHECK_DUE_AT),
    )
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="checks")["QueueUrl"]
    dispatcher = Dispatcher(
        DueChecks(TABLE_NAME, boto3.client("dynamodb")),
        sqs,
        queue,
        HealthPolicy(),
        clock=lambda: T0 + INTERVAL,
    )

    assert dispatcher.dispatch().read == 0
