"""DynamoDB stream -> Lambda, locally: what the event source mappings of template.yaml do on AWS.

A poller thread reads each table stream from moto (GetShardIterator / GetRecords), keeps the records
the mapping's FilterCriteria accept, and invokes the real handler with a Lambda-shaped event in
batches of `BatchSize`. Partial batch responses are honoured: failed records are retried up to
`MaximumRetryAttempts`, then reported to the `OnFailure` SQS destination (as Lambda does, with the
shard and sequence numbers, not the record) and skipped.

Event filtering implements the subset of the pattern syntax the template uses: nested keys, lists of
exact values, `anything-but`, `prefix` and `exists`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from devstack import template as tpl
from devstack.runtime import FunctionRunner

# -- event filtering ---------------------------------------------------------------------------
_MISSING = object()


def _leaf_matches(rule: Any, value: Any) -> bool:
    if isinstance(rule, dict):
        ((op, arg),) = rule.items()
        if op == "exists":
            return (value is not _MISSING) is bool(arg)
        if value is _MISSING:
            return False
        if op == "anything-but":
            excluded = arg if isinstance(arg, list) else [arg]
            return value not in excluded
        if op == "prefix":
            return isinstance(value, str) and value.startswith(arg)
        raise NotImplementedError(f"event filter operator {op!r} is not implemented locally")
    return value is not _MISSING and value == rule


def matches(pattern: dict[str, Any], event: Any) -> bool:
    """Does one FilterCriteria pattern accept this (Lambda-shaped) record?"""
    for key, rule in pattern.items():
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(rule, dict):
            # A missing object has no leaves: only `exists: false` below it matches (as on AWS).
            if not matches(rule, {} if value is _MISSING else value):
                return False
        elif not any(_leaf_matches(option, value) for option in rule):
            return False
    return True


def accepted(filters: list[dict[str, Any]], record: dict[str, Any]) -> bool:
    return not filters or any(matches(pattern, record) for pattern in filters)


# -- the template's mappings -------------------------------------------------------------------
@dataclass(frozen=True)
class StreamMapping:
    function: str  # logical id
    table: str  # logical id of the table whose stream it reads
    batch_size: int
    max_retries: int
    filters: list[dict[str, Any]]
    on_failure_queue: str | None  # logical id of the SQS queue


def stream_mappings(template: dict[str, Any] | None = None) -> list[StreamMapping]:
    template = template or tpl.load_template()
    mappings = []
    for logical_id, body in tpl.resources(template, "AWS::Serverless::Function").items():
        for event in body["Properties"].get("Events", {}).values():
            if event.get("Type") != "DynamoDB":
                continue
            props = event["Properties"]
            stream = props["Stream"]
            table = stream["Fn::GetAtt"][0] if isinstance(stream, dict) else str(stream)
            destination = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            queue = destination["Fn::GetAtt"][0] if isinstance(destination, dict) else None
            mappings.append(
                StreamMapping(
                    function=logical_id,
                    table=table,
                    batch_size=int(props.get("BatchSize", 100)),
                    max_retries=int(props.get("MaximumRetryAttempts", -1)),
                    filters=[
                        json.loads(f["Pattern"]) for f in props.get("FilterCriteria", {}).get("Filters", [])
                    ],
                    on_failure_queue=queue,
                )
            )
    return mappings


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record (as boto3 returns it) in the shape Lambda hands to the function."""
    shaped = json.loads(json.dumps(record, default=_json_default))
    shaped["eventSourceARN"] = stream_arn
    return shaped


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()  # Lambda sends ApproximateCreationDateTime as epoch seconds
    raise TypeError(type(value).__name__)


def read_new_records(streams: Any, stream_arn: str, positions: dict[str, str]) -> list[dict[str, Any]]:
    """Records added since the last call. `positions` keeps the last sequence number read per shard.

    A fresh iterator is asked for on every call instead of following NextShardIterator: moto restores a
    table from a deep copy when a transaction is cancelled (e.g. a duplicate agent, 409), which replaces
    the table's stream shard, and an iterator taken before then would read the orphaned copy forever.
    """
    records: list[dict[str, Any]] = []
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    for shard in shards:
        shard_id = shard["ShardId"]
        after = positions.get(shard_id)
        where = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
            if after
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard_id, **where)[
            "ShardIterator"
        ]
        found = streams.get_records(ShardIterator=iterator).get("Records", [])
        if found:
            positions[shard_id] = found[-1]["dynamodb"]["SequenceNumber"]
        records += [lambda_record(r, stream_arn) for r in found]
    return records


# -- the poller --------------------------------------------------------------------------------
@dataclass
class StreamPoller:
    mapping: StreamMapping
    runner: FunctionRunner
    ddb: Any
    streams: Any
    table_name: str
    sqs: Any = None
    queue_url: str | None = None
    interval: float = 0.2
    after_batch: Callable[[], None] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> StreamPoller:
        self._thread = threading.Thread(target=self._run, name=f"stream-{self.mapping.function}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        stream_arn = self.ddb.describe_table(TableName=self.table_name)["Table"]["LatestStreamArn"]
        positions: dict[str, str] = {}
        while not self._stop.is_set():
            try:
                records = read_new_records(self.streams, stream_arn, positions)
            except Exception as error:  # moto shutting down, or a transient error: try again
                if self._stop.is_set():
                    return
                print(f"[streams] reading {self.table_name} failed: {error}", flush=True)
                records = []
            wanted = [r for r in records if accepted(self.mapping.filters, r)]
            for start in range(0, len(wanted), self.mapping.batch_size):
                self.deliver(wanted[start : start + self.mapping.batch_size])
            if not records:
                self._stop.wait(self.interval)

    def deliver(self, batch: list[dict[str, Any]]) -> None:
        """Invoke until the batch succeeds or its retries are spent (then report to the destination)."""
        attempt = 0
        while batch:
            failed_from = self._invoke(batch)
            if failed_from is None:
                break
            batch = batch[failed_from:]
            if 0 <= self.mapping.max_retries <= attempt:
                self._on_failure(batch, attempt + 1)
                break
            attempt += 1
            time.sleep(min(1.0, 0.1 * 2**attempt))
        if self.after_batch is not None:
            self.after_batch()

    def _invoke(self, batch: list[dict[str, Any]]) -> int | None:
        """Index of the first failed record, or None when the whole batch succeeded."""
        try:
            result = self.runner.invoke({"Records": batch})
        except Exception as error:  # an unhandled error fails the whole batch
            print(f"[streams] {self.runner.name} failed: {type(error).__name__}", flush=True)
            return 0
        failures = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        for index, record in enumerate(batch):
            if record["dynamodb"]["SequenceNumber"] in failures:
                return index
        return None

    def _on_failure(self, batch: list[dict[str, Any]], attempts: int) -> None:
        first, last = batch[0]["dynamodb"]["SequenceNumber"], batch[-1]["dynamodb"]["SequenceNumber"]
        print(
            f"[streams] {self.runner.name}: records {first}..{last} sent to the on-failure queue", flush=True
        )
        if self.sqs is None or self.queue_url is None:
            return
        body = {
            "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": self.runner.name},
            "DDBStreamBatchInfo": {
                "shardId": "local",
                "startSequenceNumber": first,
                "endSequenceNumber": last,
                "batchSize": len(batch),
                "streamArn": batch[0]["eventSourceARN"],
                "approximateInvokeCount": attempts,
            },
        }
        with contextlib.suppress(Exception):
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body))
