"""The checks queue as the tests use it: ChecksQueue and ChecksDeadLetterQueue created under moto from
template.yaml's own properties (redrive included), and its messages handed to the checker as Lambda's SQS event
source hands them (a batch of records; what the handler does not name in `batchItemFailures` is deleted, the
rest becomes visible again and, after `maxReceiveCount` receives, moves to the dead-letter queue)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from devstack import template as tpl
from tests.conftest import TEST_REFS

TEMPLATE = tpl.load_template()
QUEUE_NAME = TEST_REFS["ChecksQueue"].rsplit("/", 1)[-1]
DLQ_NAME = f"{QUEUE_NAME}-dead-letters"
CHECKER = TEMPLATE["Resources"]["CheckMailboxFunction"]["Properties"]["Events"]["Checks"]["Properties"]
BATCH_SIZE = int(CHECKER["BatchSize"])
MAX_RECEIVES = int(TEMPLATE["Resources"]["ChecksQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"])


@dataclass(frozen=True)
class Delivery:
    answer: dict[str, Any]  # the handler's (batchItemFailures)
    records: list[dict[str, Any]]

    @property
    def failed(self) -> set[str]:
        return {f["itemIdentifier"] for f in self.answer["batchItemFailures"]}


@dataclass
class ChecksQueue:
    sqs: Any
    url: str
    arn: str
    dlq_url: str

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def receive(self, url: str | None = None, limit: int = BATCH_SIZE) -> list[dict[str, Any]]:
        return list(
            self.sqs.receive_message(
                QueueUrl=url or self.url,
                MaxNumberOfMessages=limit,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        )

    def bodies(self, url: str | None = None) -> list[dict[str, Any]]:
        """Every message now visible (left in the queue, visible again at once: the visibility timeout is 0)."""
        return [json.loads(m["Body"]) for m in self.receive(url, limit=10)]

    def records(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages as records of the SQS event Lambda's event source mapping sends."""
        return [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": self.arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]

    def deliver(self, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> Delivery:
        """One batch through the handler, as the event source mapping does with ReportBatchItemFailures: the
        messages not named as failed are deleted, the others are received again later."""
        messages = self.receive()
        delivery = Delivery(handler({"Records": self.records(messages)}), self.records(messages))
        for message in messages:
            if message["MessageId"] not in delivery.failed:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return delivery


def create_checks_queues() -> ChecksQueue:
    """Inside moto: the dead-letter queue and ChecksQueue with the template's redrive policy; a visibility
    timeout of 0 so that a failed message is visible again at once (the template's is six minutes)."""
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName=DLQ_NAME)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=QUEUE_NAME,
        Attributes={
            "VisibilityTimeout": "0",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert url == TEST_REFS["ChecksQueue"], url  # the URL the functions' CHECKS_QUEUE_URL names
    return ChecksQueue(sqs, url, arn, dlq_url)
