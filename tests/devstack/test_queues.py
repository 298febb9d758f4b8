"""devstack/queues.py: the template's queues in moto with their attributes, and the SQS event source that
plays Lambda's poller (batches, partial batch responses, visibility timeout, redrive, the concurrency cap)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack import queues
from devstack import template as tpl

REFS = {
    "ChecksQueue.Arn": "arn:aws:sqs:us-east-1:123456789012:t-ChecksQueue",
    "ChecksDeadLetterQueue.Arn": "arn:aws:sqs:us-east-1:123456789012:t-ChecksDeadLetterQueue",
    **tpl.parameter_defaults(tpl.load_template()),
}


class FakeFunction:
    """A function's instance: `answer(batch)` is what it returns (or raises); every batch is kept."""

    def __init__(self, answer: Callable[[list[dict[str, Any]]], Any], name: str = "t-Checker") -> None:
        self.name = name
        self.answer = answer
        self.batches: list[list[dict[str, Any]]] = []

    def invoke(self, event: dict[str, Any]) -> Any:
        self.batches.append(event["Records"])
        return self.answer(event["Records"])


def _until(what: str, probe: Callable[[], Any], budget: float = 30) -> Any:
    deadline = time.monotonic() + budget
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {budget} s: {what}")
        time.sleep(0.05)
    return found


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def _queue(sqs: Any, *, visibility: int, max_receives: int = 3) -> tuple[str, str]:
    """A queue whose redrive policy sends to a dead-letter queue: (queue URL, DLQ URL)."""
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName="q",
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}),
        },
    )["QueueUrl"]
    return url, dlq


def _source(
    sqs: Any, url: str, functions: list[Any], *, batch: int = 5, cap: int = 2
) -> queues.SqsEventSource:
    mapping = queues.QueueMapping("Checker", "q", batch, report_batch_item_failures=True, max_concurrency=cap)
    return queues.SqsEventSource(
        mapping, functions, sqs, url, "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1"
    )


def _count(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


# -- the template --------------------------------------------------------------------------------
def test_the_checker_reads_the_checks_queue_as_the_template_says() -> None:
    (mapping,) = queues.queue_mappings(REFS)
    assert mapping == queues.QueueMapping(
        function="CheckMailboxFunction",
        queue="ChecksQueue",
        batch_size=5,
        report_batch_item_failures=True,
        max_concurrency=int(REFS["CheckConcurrency"]),
    )


def test_the_checks_queue_gets_its_visibility_timeout_and_redrive_policy(sqs: Any) -> None:
    # When the template's queues are created
    urls = queues.create_queues(sqs, "t", REFS, tpl.load_template())
    # Then the checks queue hides a message for 360 s and sends it to its DLQ after 3 receives
    attributes = sqs.get_queue_attributes(QueueUrl=urls["ChecksQueue"], AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "360"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": REFS["ChecksDeadLetterQueue.Arn"],
        "maxReceiveCount": 3,
    }
    assert attributes["QueueArn"] == REFS["ChecksQueue.Arn"]


# -- partial batch responses ---------------------------------------------------------------------
def test_a_failed_message_stays_the_others_are_deleted(sqs: Any) -> None:
    # Given three messages, of which the function fails the second
    url, _ = _queue(sqs, visibility=300)
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    function = FakeFunction(lambda batch: {"batchItemFailures": [{"itemIdentifier": batch[1]["messageId"]}]})
    source = _source(sqs, url, [function])
    # When one batch is received and delivered
    batch = source.receive()
    failed = source.deliver(function, batch)  # type: ignore[arg-type]
    # Then the function got Lambda's record shape, and only the failed message is left (in flight)
    assert [r["body"] for r in batch] == ["a", "b", "c"]
    assert {r["eventSource"] for r in batch} == {"aws:sqs"}
    assert batch[0]["attributes"]["ApproximateReceiveCount"] == "1"
    assert failed == {batch[1]["messageId"]}
    assert _count(sqs, url) == 1


@pytest.mark.parametrize(
    ("answer", "left"),
    [
        (lambda batch: {"batchItemFailures": []}, 0),
        (lambda batch: None, 0),
        (lambda batch: {"batchItemFailures": [{"itemIdentifier": "not-in-the-batch"}]}, 2),
        (lambda batch: {"batchItemFailures": [{"itemIdentifier": ""}]}, 2),
    ],
    ids=["no failures", "no response", "an unknown id fails the batch", "an empty id fails the batch"],
)
def test_what_a_response_leaves_in_the_queue(sqs: Any, answer: Callable[[Any], Any], left: int) -> None:
    url, _ = _queue(sqs, visibility=300)
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    function = FakeFunction(answer)
    source = _source(sqs, url, [function])
    source.deliver(function, source.receive())  # type: ignore[arg-type]
    assert _count(sqs, url) == left


def test_an_error_of_the_function_returns_the_whole_batch(sqs: Any) -> None:
    url, _ = _queue(sqs, visibility=300)
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=body)

    def crash(batch: list[dict[str, Any]]) -> Any:
        raise RuntimeError("boom")

    function = FakeFunction(crash)
    source = _source(sqs, url, [function])
    assert len(source.deliver(function, source.receive())) == 2  # type: ignore[arg-type]
    assert _count(sqs, url) == 2


# -- the poller, running ---------------------------------------------------------------------------
def test_a_message_that_keeps_failing_is_retried_after_the_visibility_timeout_then_redriven(sqs: Any) -> None:
    # Given a queue hiding a received message for 1 s, redriving after 3 receives, and a function that
    # always fails the message
    url, dlq = _queue(sqs, visibility=1, max_receives=3)
    sqs.send_message(QueueUrl=url, MessageBody="doomed")
    function = FakeFunction(
        lambda batch: {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in batch]}
    )
    source = _source(sqs, url, [function], cap=1).start()
    try:
        # Then it ends in the dead-letter queue, having been delivered exactly 3 times (receive counts 1, 2, 3)
        _until("redriven", lambda: _count(sqs, dlq) == 1)
    finally:
        source.stop()
    assert [batch[0]["attributes"]["ApproximateReceiveCount"] for batch in function.batches] == [
        "1",
        "2",
        "3",
    ]
    assert _count(sqs, url) == 0


def test_no_more_invocations_in_flight_than_the_maximum_concurrency(sqs: Any) -> None:
    # Given 6 messages, batches of one, a cap of 2, and instances that hold each batch until released
    url, _ = _queue(sqs, visibility=300)
    for number in range(6):
        sqs.send_message(QueueUrl=url, MessageBody=str(number))
    release = threading.Event()

    def held(batch: list[dict[str, Any]]) -> Any:
        release.wait(30)
        return None

    functions = [FakeFunction(held) for _ in range(3)]  # one more instance than the cap allows
    source = _source(sqs, url, functions, batch=1, cap=2).start()
    try:
        # When two invocations are in flight
        _until("two in flight", lambda: source._in_flight == 2)
        # Then the third instance was never started, and once released every message is done
        assert functions[2].batches == []
        release.set()
        _until("all deleted", lambda: source.deleted == 6)
    finally:
        release.set()
        source.stop()
    assert source.peak == 2
    assert source.invocations == 6


def test_instances_share_the_handler_but_not_the_lock() -> None:
    from devstack.runtime import FunctionRunner

    runner = FunctionRunner("t-Checker", "json", "dumps", logical_id="CheckMailboxFunction", environment={})
    copies = queues.instances(runner, 3)
    assert copies[0] is runner
    assert {(c.name, c.module, c.logical_id) for c in copies} == {
        ("t-Checker", "json", "CheckMailboxFunction")
    }
    assert len({id(c._lock) for c in copies}) == 3
    # No copy has a cold start of its own (it would swap the process's environment while others run)
    assert {c._handler for c in copies} == {json.dumps}
