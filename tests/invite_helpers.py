"""Helpers of the invite tests: moto SES, stream events read from the real (moto) stream."""

from __future__ import annotations

import re
from typing import Any

import boto3
from botocore.exceptions import ClientError

from devstack import streams
from devstack.mailbox import sent_emails
from tests.conftest import TABLE_NAME

SENDER = "Mailbox Onboarding <invites@example.com>"
BASE_URL = "https://connect.example.com"
LINK = re.compile(r"https://connect\.example\.com/connect/([A-Za-z0-9_-]{43})")


def verify_sender() -> None:
    boto3.client("sesv2").create_email_identity(EmailIdentity="invites@example.com")


class StreamReader:
    """Reads the agents table's stream like the event source mapping does, FilterCriteria included."""

    def __init__(self) -> None:
        self.ddb = boto3.client("dynamodb")
        # moto 5.2.5 in-process answers 404 to boto3 1.44's resolved streams endpoint unless it is given.
        self.streams = boto3.client(
            "dynamodbstreams", endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com"
        )
        self.arn = self.ddb.describe_table(TableName=TABLE_NAME)["Table"]["LatestStreamArn"]
        self.iterators: dict[str, str] = {}
        (self.mapping,) = [m for m in streams.stream_mappings() if m.function == "SendInviteFunction"]

    def new_records(self) -> list[dict[str, Any]]:
        records = streams.read_new_records(self.streams, self.arn, self.iterators)
        return [r for r in records if streams.accepted(self.mapping.filters, r)]

    def event(self) -> dict[str, Any]:
        return {"Records": self.new_records()}


def emails() -> list[dict[str, Any]]:
    return sent_emails()


def token_of(sent: dict[str, Any]) -> str:
    found = LINK.search(sent["text"])
    assert found, sent["text"]
    return found.group(1)


def throttling() -> ClientError:
    return ClientError(
        {"Error": {"Code": "Throttling", "Message": "Maximum sending rate exceeded."}}, "SendEmail"
    )


class FlakySes:
    """SES that answers with the given errors first, then sends through moto."""

    def __init__(self, *errors: ClientError) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.real = boto3.client("sesv2")

    def send_email(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.real.send_email(**kwargs)
