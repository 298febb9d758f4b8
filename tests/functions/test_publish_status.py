"""PublishStatusFunction: the agents table's real stream records (moto), filtered by the template's own
FilterCriteria, handed to the handler; what lands on the stack's bus read back through a rule, as a
subscriber gets it, and held to docs/events/agent-status-changed.schema.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
from pydantic import ValidationError

from devstack import streams
from devstack import template as tpl
from functions.publish_status import app
from onboarding import deps
from onboarding.agents.models import AgentStatus, Attr
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core import aws
from onboarding.core.eventbus import EventBridgePublisher
from tests import lifecycle
from tests.conftest import TABLE_NAME, TEST_REFS, LambdaContext

S = AgentStatus
ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "events" / "agent-status-changed.schema.json").read_text())
BUS = TEST_REFS["AgentEventsBus"]
(MAPPING,) = [m for m in streams.stream_mappings() if m.function == "PublishStatusFunction"]


@dataclass
class Stream:
    """The agents table's stream, read as the event source mapping reads it (the template's filters)."""

    client: Any
    arn: str
    positions: dict[str, str] = field(default_factory=dict)

    def new_records(self) -> list[dict[str, Any]]:
        return streams.read_new_records(self.client, self.arn, self.positions)

    def batch(self) -> list[dict[str, Any]]:
        """The new records the mapping hands to the function."""
        return [r for r in self.new_records() if streams.accepted(MAPPING.filters, r)]


@dataclass
class Subscriber:
    """A rule on the stack's bus delivering every event to a queue: what a consumer receives."""

    sqs: Any
    queue_url: str

    def received(self) -> list[dict[str, Any]]:
        found = []
        while messages := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                found.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return found


@pytest.fixture
def stream(moto_aws: None) -> Stream:
    arn = boto3.client("dynamodb").describe_table(TableName=TABLE_NAME)["Table"]["LatestStreamArn"]
    # moto 5.2.5 in-process answers 404 to boto3's resolved streams endpoint unless it is given.
    client = boto3.client("dynamodbstreams", endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com")
    return Stream(client, arn)


@pytest.fixture
def subscriber(moto_aws: None) -> Subscriber:
    events, sqs = boto3.client("events"), boto3.client("sqs")
    events.create_event_bus(Name=BUS)
    queue_url = sqs.create_queue(QueueName="dashboard-webhook")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="to-dashboard",
        EventBusName=BUS,
        EventPattern=json.dumps({"source": ["mailbox-onboarding"], "detail-type": ["Agent Status Changed"]}),
    )
    events.put_targets(Rule="to-dashboard", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])
    deps.reset()
    return Subscriber(sqs, queue_url)


def invoke(records: list[dict[str, Any]]) -> dict[str, Any]:
    return app.lambda_handler({"Records": records}, LambdaContext())  # type: ignore[arg-type]


def summary(events: list[dict[str, Any]]) -> list[tuple[str | None, str, int]]:
    return [(e["detail"]["from"], e["detail"]["to"], e["detail"]["version"]) for e in events]


def valid(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event valid against the schema. moto 5.2.5 leaves `account` out of the envelope it hands to
    targets (its default input template omits it; EventBridge sends it): put back, the rest as received."""
    for event in events:
        assert "account" not in event or event["account"] == "123456789012"
        jsonschema.validate(
            {"account": "123456789012", **event},
            SCHEMA,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
    return events


def test_an_onboarding_publishes_each_status_in_order(
    repo: DynamoAgentRepository, stream: Stream, subscriber: Subscriber
) -> None:
    # Given an agent added and taken through its onboarding to verified
    agent = lifecycle.add(repo, email="ann@contoso.com", name="Ann Archer")
    lifecycle.walk(repo, agent, S.VERIFIED)
    # When the stream's records reach the function
    assert invoke(stream.batch()) == {"batchItemFailures": []}
    # Then the bus got one event per change, in order, each valid against the schema
    events = valid(subscriber.received())
    assert summary(events) == [
        (None, "invite_pending", 1),
        ("invite_pending", "invited", 2),
        ("invited", "connecting", 3),
        ("connecting", "verified", 4),
    ]
    assert {(e["source"], e["detail-type"]) for e in events} == {
        ("mailbox-onboarding", "Agent Status Changed")
    }
    assert {(e["detail"]["tenantId"], e["detail"]["agentId"]) for e in events} == {("demo", agent.agent_id)}
    # ... at the times the agent's item says the changes happened
    assert events[-1]["detail"]["time"] == repo.get("demo", agent.agent_id).updated_at


def test_the_reason_goes_with_the_change(
    repo: DynamoAgentRepository, stream: Stream, subscriber: Subscriber
) -> None:
    agent = lifecycle.add_at(repo, S.CONNECTING)
    lifecycle.walk(repo, agent, S.FAILED, reason="wrong_password")
    invoke(stream.batch())
    last = valid(subscriber.received())[-1]["detail"]
    assert (last["from"], last["to"], last["reason"]) == ("connecting", "failed", "wrong_password")


def test_writes_that_keep_the_status_publish_nothing(
    repo: DynamoAgentRepository, stream: Stream, subscriber: Subscriber
) -> None:
    # Given a verified agent whose events were published
    agent = lifecycle.add_at(repo, S.VERIFIED)
    invoke(stream.batch())
    subscriber.received()
    # When only its private state changes (a health check's bookkeeping)
    repo.update_attributes(
        "demo", agent.agent_id, {Attr.LAST_CHECK_AT: "2026-12-01T00:00:00.000Z"}, expected_status=S.VERIFIED
    )
    batch = stream.batch()
    # Then the record reaches the function (the filter cannot compare images) but no event is published
    assert [r["eventName"] for r in batch] == ["MODIFY"]
    assert invoke(batch) == {"batchItemFailures": []}
    assert subscriber.received() == []


def test_a_removal_is_a_change_to_removed(
    repo: DynamoAgentRepository, stream: Stream, subscriber: Subscriber
) -> None:
    agent = lifecycle.add_at(repo, S.INVITED)
    repo.delete("demo", agent.agent_id)
    invoke(stream.batch())
    events = valid(subscriber.received())
    assert summary(events)[-1] == ("invited", "removed", 3)
    assert events[-1]["detail"]["reason"] is None


def test_only_agent_items_reach_the_function(repo: DynamoAgentRepository, stream: Stream) -> None:
    # Given an agent added (with its email guard) and removed (both deleted)
    agent = lifecycle.add(repo)
    repo.delete("demo", agent.agent_id)
    records = stream.new_records()
    # Then the template's filter passes the agent item's INSERT and REMOVE, not the guard's
    entities = {
        (r["eventName"], (r["dynamodb"].get("NewImage") or r["dynamodb"]["OldImage"])["entity"]["S"])
        for r in records
    }
    assert entities == {
        ("INSERT", "agent"),
        ("INSERT", "email_guard"),
        ("REMOVE", "agent"),
        ("REMOVE", "email_guard"),
    }
    passed = [r for r in records if streams.accepted(MAPPING.filters, r)]
    assert [(r["eventName"]) for r in passed] == ["INSERT", "REMOVE"]


def test_no_event_holds_the_email_address_the_name_or_a_secret(
    repo: DynamoAgentRepository, stream: Stream, subscriber: Subscriber
) -> None:
    # Given an agent whose item holds an email, a name, an inviter's name and a task token
    agent = lifecycle.add(repo, email="zed.secret@contoso.com", name="Zed Private", tenant_name="Hush Corp")
    lifecycle.walk(repo, agent, S.NEEDS_SETTINGS, set_attributes={Attr.TASK_TOKEN: "task-token-zzz"})
    invoke(stream.batch())
    published = json.dumps(subscriber.received())
    for secret in ("zed.secret", "contoso", "Zed Private", "Hush Corp", "task-token-zzz"):
        assert secret not in published


class RefusingClient:
    """EventBridge refusing some entries of a PutEvents (as it does under throttling): those are not on the
    bus and the answer names them; the others are published."""

    def __init__(self, real: Any, refuse: Callable[[dict[str, Any]], bool]) -> None:
        self.real, self.refuse, self.calls = real, refuse, 0

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        refused = [self.refuse(json.loads(entry["Detail"])) for entry in Entries]
        sent = (
            iter(
                self.real.put_events(Entries=[e for e, r in zip(Entries, refused, strict=True) if not r])[
                    "Entries"
                ]
            )
            if not all(refused)
            else iter(())
        )
        results = [
            {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"} if r else next(sent)
            for r in refused
        ]
        return {"FailedEntryCount": sum(refused), "Entries": results}


def test_an_event_the_bus_refuses_fails_its_record_and_the_ones_after_it(
    repo: DynamoAgentRepository, stream: Stream, subscriber: Subscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an onboarding's four changes in one batch, and a bus that refuses the move to connecting once
    agent = lifecycle.add_at(repo, S.VERIFIED)
    batch = stream.batch()
    refused_once: list[str] = []

    def refuse(detail: dict[str, Any]) -> bool:
        if detail["to"] == "connecting" and not refused_once:
            refused_once.append(detail["agentId"])
            return True
        return False

    client = RefusingClient(aws.client("events"), refuse)
    monkeypatch.setattr(app, "deps", lambda: EventBridgePublisher(BUS, client))
    # When the batch is handled
    result = invoke(batch)
    # Then the refused record and every one after it are reported; the bus has what it took of the request
    numbers = [r["dynamodb"]["SequenceNumber"] for r in batch]
    assert result == {"batchItemFailures": [{"itemIdentifier": n} for n in numbers[2:]]}
    first = summary(valid(subscriber.received()))
    assert first == [
        (None, "invite_pending", 1),
        ("invite_pending", "invited", 2),
        ("connecting", "verified", 4),
    ]
    # When Lambda retries from the first failed record
    assert invoke(batch[2:]) == {"batchItemFailures": []}
    # Then the rest follows: nothing is lost, version 4 comes twice (at least once), and the versions put the
    # consumer's copy in order
    retried = summary(valid(subscriber.received()))
    assert retried == [("invited", "connecting", 3), ("connecting", "verified", 4)]
    assert sorted(set(first + retried), key=lambda change: change[2]) == [
        (None, "invite_pending", 1),
        ("invite_pending", "invited", 2),
        ("invited", "connecting", 3),
        ("connecting", "verified", 4),
    ]
    assert refused_once == [agent.agent_id]


def test_a_put_events_call_that_fails_fails_the_batch(
    repo: DynamoAgentRepository, stream: Stream, moto_aws: None
) -> None:
    # Given no bus (deleted, or the name misconfigured): PutEvents itself fails
    lifecycle.add(repo)
    # Then the invocation fails (Lambda retries the batch, bisecting it), nothing is reported as done
    with pytest.raises(Exception, match=r"ResourceNotFoundException|does not exist"):
        invoke(stream.batch())


def test_a_record_that_cannot_be_read_fails_the_batch(stream: Stream, subscriber: Subscriber) -> None:
    # Given a record whose image is not an agent's (no status)
    record = {
        "eventID": "1",
        "eventName": "INSERT",
        "dynamodb": {
            "SequenceNumber": "100",
            "NewImage": {"entity": {"S": "agent"}, "agentId": {"S": "01JBX7Z8Q4M2V6N9P3R5T7W9YA"}},
        },
    }
    # Then the batch fails (Lambda bisects it down to this record, then sends it to the DLQ)
    with pytest.raises(ValidationError):
        invoke([record])
    assert subscriber.received() == []


def test_the_template_gives_the_function_the_stacks_bus() -> None:
    env = tpl.function_environment("PublishStatusFunction", TEST_REFS)
    assert env["EVENT_BUS_NAME"] == BUS
    props = tpl.load_template()["Resources"]["AgentEventsBus"]["Properties"]
    assert props["Name"] == {"Fn::Sub": "${AWS::StackName}-agents"}  # two stages, two buses
