"""SQS queues and SQS event sources, locally: what template.yaml's queues and `Type: SQS` events do on AWS.

The queues are created in moto with the template's attributes (visibility timeout, retention, the redrive
policy to their dead-letter queue), so SQS itself (moto) hides a received message for the visibility
timeout and moves it to the dead-letter queue once it has been received `maxReceiveCount` times.

`SqsEventSource` plays Lambda's SQS poller for one mapping: up to `MaximumConcurrency` pollers (the
`ScalingConfig` cap; Lambda's default is the function's concurrency, 1000 here as a bound) each receive a batch
of at most `BatchSize` messages (long polling), invoke the function with the event Lambda sends, and delete
what succeeded. With `ReportBatchItemFailures`, the messages named in `batchItemFailures` stay in the queue
(visible again after the visibility timeout, then redriven); a response naming a message that is not in the
batch, or an error of the function, fails the whole batch, as AWS documents
(https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html). Each concurrent invocation
gets its own warm instance of the function (a `FunctionRunner` sharing the imported handler), so the cap is
the number of invocations in flight; the function's AWS calls are held to its own policy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from devstack import template as tpl
from devstack.runtime import FunctionRunner

SQS_RECEIVE_MAX = 10  # ReceiveMessage returns at most ten messages
DEFAULT_CONCURRENCY = 1000  # no ScalingConfig: the function's (account's) concurrency bounds it
# Queue properties of AWS::SQS::Queue that are queue attributes of the same name.
_ATTRIBUTES = (
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
)


# -- the queues ----------------------------------------------------------------------------------
def queue_attributes(logical_id: str, refs: dict[str, str], template: dict[str, Any]) -> dict[str, str]:
    """The queue's attributes as SetQueueAttributes takes them (the redrive policy's ARN resolved)."""
    props = template["Resources"][logical_id].get("Properties", {})
    attributes = {name: str(tpl.resolve(props[name], refs)) for name in _ATTRIBUTES if name in props}
    if redrive := props.get("RedrivePolicy"):
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": str(tpl.resolve(redrive["deadLetterTargetArn"], refs)),
                "maxReceiveCount": int(tpl.resolve(redrive["maxReceiveCount"], refs)),
            }
        )
    return attributes


def create_queues(sqs: Any, stage: str, refs: dict[str, str], template: dict[str, Any]) -> dict[str, str]:
    """Every AWS::SQS::Queue of the template, with its attributes; their URLs by logical id. The attributes
    are set once all exist (a redrive policy names a queue that must exist)."""
    urls = {
        logical_id: sqs.create_queue(QueueName=f"{stage}-{logical_id}")["QueueUrl"]
        for logical_id in tpl.resources(template, "AWS::SQS::Queue")
    }
    for logical_id, url in urls.items():
        if attributes := queue_attributes(logical_id, refs, template):
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return urls


# -- the template's mappings ---------------------------------------------------------------------
@dataclass(frozen=True)
class QueueMapping:
    function: str  # logical id
    queue: str  # logical id of the AWS::SQS::Queue
    batch_size: int
    report_batch_item_failures: bool
    max_concurrency: int
    enabled: bool = True


def queue_mappings(refs: dict[str, str], template: dict[str, Any] | None = None) -> list[QueueMapping]:
    template = template or tpl.load_template()
    mappings = []
    for logical_id, body in tpl.resources(template, "AWS::Serverless::Function").items():
        for event in body["Properties"].get("Events", {}).values():
            if event.get("Type") != "SQS":
                continue
            props = event["Properties"]
            queue = props["Queue"]
            scaling = props.get("ScalingConfig", {}).get("MaximumConcurrency")
            mappings.append(
                QueueMapping(
                    function=logical_id,
                    queue=queue["Fn::GetAtt"][0] if isinstance(queue, dict) else str(queue),
                    batch_size=int(tpl.resolve(props.get("BatchSize", 10), refs)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in props.get("FunctionResponseTypes", []),
                    max_concurrency=int(tpl.resolve(scaling, refs))
                    if scaling is not None
                    else DEFAULT_CONCURRENCY,
                    enabled=bool(props.get("Enabled", True)),
                )
            )
    return mappings


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A ReceiveMessage message (as boto3 returns it) in the shape Lambda hands to the function."""
    body = message["Body"]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def instances(runner: FunctionRunner, count: int) -> list[FunctionRunner]:
    """`count` warm instances of one function: `runner` and copies with their own lock (one invocation
    each at a time, as a Lambda instance), sharing its imported handler and environment."""
    return [runner, *(runner.instance() for _ in range(count - 1))]


def failed_ids(result: Any, batch: list[dict[str, Any]], *, partial: bool) -> set[str]:
    """The messages of `batch` that stay in the queue after the function returned `result`."""
    if not partial:
        return set()  # a function without ReportBatchItemFailures succeeded when it returned
    failures = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
    if not failures:
        return set()
    ids = {record["messageId"] for record in batch}
    named = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
    if any(not name or name not in ids for name in named):
        return ids  # an invalid response fails the whole batch
    return {str(name) for name in named}


# -- the poller ----------------------------------------------------------------------------------
@dataclass
class SqsEventSource:
    mapping: QueueMapping
    runners: list[FunctionRunner]  # one per concurrent invocation (see `instances`)
    sqs: Any
    queue_url: str
    queue_arn: str
    region: str
    wait_seconds: int = 1  # long polling (short, so that `stop` is prompt)
    invocations: int = 0
    deleted: int = 0
    peak: int = 0  # the most invocations in flight at once
    _in_flight: int = 0
    _count_lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> SqsEventSource:
        if not self.mapping.enabled:
            return self
        for number, runner in enumerate(self.runners[: self.mapping.max_concurrency]):
            thread = threading.Thread(
                target=self._run, args=(runner,), name=f"sqs-{self.mapping.function}-{number}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.wait_seconds + 5)
        self._threads.clear()

    def _run(self, runner: FunctionRunner) -> None:
        while not self._stop.is_set():
            try:
                batch = self.receive()
            except Exception as error:  # moto shutting down, or a transient error: try again
                if self._stop.is_set():
                    return
                print(f"[queues] receiving from {self.mapping.queue} failed: {error}", flush=True)
                self._stop.wait(1)
                continue
            if batch:
                self.deliver(runner, batch)

    def receive(self) -> list[dict[str, Any]]:
        """One batch: at most `BatchSize` messages (several receives when it is above ten)."""
        batch: list[dict[str, Any]] = []
        while len(batch) < self.mapping.batch_size:
            found = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_RECEIVE_MAX, self.mapping.batch_size - len(batch)),
                WaitTimeSeconds=0 if batch else self.wait_seconds,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not found:
                break
            batch += [lambda_record(m, self.queue_arn, self.region) for m in found]
        return batch

    def deliver(self, runner: FunctionRunner, batch: list[dict[str, Any]]) -> set[str]:
        """Invoke once; delete what succeeded; the ids left in the queue."""
        with self._count_lock:
            self.invocations += 1
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        try:
            result = runner.invoke({"Records": batch})
            failed = failed_ids(result, batch, partial=self.mapping.report_batch_item_failures)
        except Exception as error:  # an unhandled error: the whole batch returns to the queue
            print(f"[queues] {runner.name} failed: {type(error).__name__}", flush=True)
            failed = {record["messageId"] for record in batch}
        finally:
            with self._count_lock:
                self._in_flight -= 1
        done = [record for record in batch if record["messageId"] not in failed]
        if done:
            with contextlib.suppress(Exception):  # not deleted: received again after the timeout
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(done)],
                )
                self.deleted += len(done)
        if failed:
            print(
                f"[queues] {runner.name}: {len(failed)} message(s) left in {self.mapping.queue} "
                "(received again after its visibility timeout)",
                flush=True,
            )
        return failed
