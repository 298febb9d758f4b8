"""The dispatcher: every few minutes, the agents whose check is due go on the checks queue.

Each shard of the sparse `ByCheckDue` index (checkShard HASH, checkDueAt RANGE) is read with a Query for
`checkDueAt <= now` (never a Scan: only due agents are read, and the index holds only scheduled agents). Each
due agent is leased with a conditional write (`checkDueAt` still the value read: of two dispatchers, or a
dispatcher and a manual check, one wins) that also moves its `checkDueAt` one lease timeout on, so a lost
message is dispatched again then. Messages leave in batches of ten (SendMessageBatch); the checker skips a
message whose lease is no longer the agent's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from onboarding.agents.models import Attr
from onboarding.agents.schedule import CHECK_SHARDS, iso
from onboarding.agents.store import agent_sk, tenant_pk
from onboarding.core.dynamo_types import from_item, to_item
from onboarding.core.errors import error_code
from onboarding.core.ids import new_id
from onboarding.core.observability import logger, metrics
from onboarding.health.models import CheckMessage, HealthPolicy

CHECK_DUE_INDEX = "ByCheckDue"
SQS_BATCH = 10


@dataclass
class DispatchReport:
    queries: int = 0  # Query calls (pages) made
    read: int = 0  # index entries read (all due)
    leased: int = 0
    sent: int = 0
    lost: int = 0  # leased by someone else meanwhile
    failed: int = 0  # not accepted by SQS (dispatched again after the lease timeout)
    shards: list[int] = field(default_factory=list)  # due agents per shard


class DueChecks:
    """The `ByCheckDue` index and the lease writes on the agents table."""

    def __init__(self, table_name: str, ddb: Any) -> None:
        self.table_name = table_name
        self.ddb = ddb

    def due(
        self, shard: str, now: str, *, page_size: int, report: DispatchReport
    ) -> Iterator[dict[str, Any]]:
        """The due entries of one shard, oldest first, a page at a time."""
        start: dict[str, Any] | None = None
        while True:
            query: dict[str, Any] = {
                "TableName": self.table_name,
                "IndexName": CHECK_DUE_INDEX,
                "KeyConditionExpression": "#shard = :shard AND #due <= :now",
                "ExpressionAttributeNames": {"#shard": Attr.CHECK_SHARD, "#due": Attr.CHECK_DUE_AT},
                "ExpressionAttributeValues": to_item({":shard": shard, ":now": now}),
                "Limit": page_size,
            }
            if start:
                query["ExclusiveStartKey"] = start
            response = self.ddb.query(**query)
            report.queries += 1
            for item in response.get("Items", []):
                report.read += 1
                yield from_item(item)
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def lease(self, entry: dict[str, Any], lease: str, until: str) -> bool:
        """Take the due check (checkDueAt still what was read); False when another took it or it changed."""
        try:
            self.ddb.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": entry["pk"], "sk": entry["sk"]}),
                UpdateExpression="SET #lease = :lease, #due = :until",
                ConditionExpression="attribute_exists(pk) AND #due = :seen",
                ExpressionAttributeNames={"#lease": Attr.CHECK_LEASE, "#due": Attr.CHECK_DUE_AT},
                ExpressionAttributeValues=to_item(
                    {":lease": lease, ":until": until, ":seen": entry[Attr.CHECK_DUE_AT]}
                ),
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def ids_of(entry: dict[str, Any]) -> tuple[str, str]:
    """(tenant id, agent id) of an index entry's table keys."""
    tenant_id = str(entry["pk"]).removeprefix(tenant_pk(""))
    agent_id = str(entry["sk"]).removeprefix(agent_sk(""))
    return tenant_id, agent_id


class Dispatcher:
    def __init__(
        self,
        due: DueChecks,
        sqs: Any,
        queue_url: str,
        policy: HealthPolicy,
        *,
        max_per_shard: int = 2000,
        page_size: int = 500,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.due_checks = due
        self.sqs = sqs
        self.queue_url = queue_url
        self.policy = policy
        self.max_per_shard = max_per_shard
        self.page_size = page_size
        self.clock = clock

    def dispatch(self) -> DispatchReport:
        now = self.clock()
        until = iso(now + self.policy.lease_timeout)
        report = DispatchReport()
        batch: list[CheckMessage] = []
        for number in range(CHECK_SHARDS):
            shard = f"CHECK#{number:02d}"
            count = 0
            for entry in self.due_checks.due(shard, iso(now), page_size=self.page_size, report=report):
                lease = new_id()
                if not self.due_checks.lease(entry, lease, until):
                    report.lost += 1
                    continue
                report.leased += 1
                count += 1
                tenant_id, agent_id = ids_of(entry)
                batch.append(
                    CheckMessage(tenant_id=tenant_id, agent_id=agent_id, cause="schedule", lease=lease)
                )
                if len(batch) == SQS_BATCH:
                    self._send(batch, report)
                    batch = []
                if count >= self.max_per_shard:
                    break  # the rest next time (their lease was not taken)
            report.shards.append(count)
        if batch:
            self._send(batch, report)
        logger.info(
            "Checks dispatched",
            extra={k: v for k, v in vars(report).items() if k != "shards"},
        )
        metrics.add_metric(name="ChecksDispatched", unit="Count", value=report.sent)
        return report

    def _send(self, batch: list[CheckMessage], report: DispatchReport) -> None:
        response = self.sqs.send_message_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "MessageBody": message.body()} for i, message in enumerate(batch)],
        )
        failed = response.get("Failed") or []
        report.sent += len(batch) - len(failed)
        report.failed += len(failed)
        if failed:
            # Their lease holds checkDueAt one lease timeout on: dispatched again then.
            logger.warning("Checks not queued", extra={"failed": json.dumps([f.get("Code") for f in failed])})
