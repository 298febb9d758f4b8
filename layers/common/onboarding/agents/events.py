"""`Agent Status Changed`: every change of an agent's status, published to the stack's EventBridge bus for
the dashboard (and anything else the account routes it to).

The events come from the agents table's stream (NEW_AND_OLD_IMAGES), not from the code that writes the
status: every write that changes it is a stream record, in order per agent, whichever function made it
(the API, the invite sender, the connect page, the workflow, the checks), and a write whose function dies
right after it is published all the same. A record is a change when the status differs between the old
and the new image: an INSERT is a change from nothing (`from` null), a REMOVE a change to `removed`.

What an event says (docs/events/agent-status-changed.schema.json): the tenant, the agent's id, from, to, the
reason the API shows (`statusReason`), when it changed and the agent's version after the change. No email
address, name or secret: the dashboard added the agent and keeps its id, which is all it needs to match the
event; the bus may route events to other accounts, logs and webhooks, where personal data has no business.

Delivery is at least once: a record retried after a partial failure publishes again the changes after it
in its batch. Per agent, `version` orders the events and names each one (`agentId` + `version` is unique):
consumers drop what they have seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onboarding.agents.models import AgentId, AgentStatus, TenantId
from onboarding.core.dynamo_types import from_item
from onboarding.core.eventbus import BusEvent, EventPublisher, FailedEntry
from onboarding.core.observability import logger, metrics
from onboarding.core.times import iso

SOURCE = "mailbox-onboarding"  # the events' `source` (the IAM policy allows this source only)
DETAIL_TYPE = "Agent Status Changed"
SCHEMA_ID = "https://mailbox-onboarding.example/events/agent-status-changed.schema.json"


class AgentStatusChanged(BaseModel):
    """The event's `detail`."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    tenant_id: TenantId = Field(alias="tenantId")
    agent_id: AgentId = Field(alias="agentId")
    from_status: AgentStatus | None = Field(alias="from", description="null: the agent was just added")
    to_status: AgentStatus = Field(alias="to", description="`removed`: the agent was deleted")
    reason: str | None = Field(max_length=1000, description="The agent's statusReason after the change")
    time: str = Field(description="When the status changed (ISO 8601, UTC)")
    version: int = Field(ge=1, description="The agent's version after the change; orders one agent's events")

    def detail(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def bus_event(self) -> BusEvent:
        return BusEvent(
            source=SOURCE,
            detail_type=DETAIL_TYPE,
            detail=self.detail(),
            time=datetime.fromisoformat(self.time.replace("Z", "+00:00")),
        )


class AgentImage(BaseModel):
    """What an event needs of an agent item's stream image (its other attributes are never read)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    entity: Literal["agent"]
    tenant_id: TenantId = Field(alias="tenantId")
    agent_id: AgentId = Field(alias="agentId")
    status: AgentStatus
    status_reason: str | None = Field(default=None, alias="statusReason")
    updated_at: str = Field(alias="updatedAt")
    version: int = Field(ge=1)


class StreamChange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    sequence_number: str = Field(alias="SequenceNumber")
    approximate_creation: float | None = Field(default=None, alias="ApproximateCreationDateTime")
    new_image: AgentImage | None = Field(default=None, alias="NewImage")
    old_image: AgentImage | None = Field(default=None, alias="OldImage")

    @field_validator("new_image", "old_image", mode="before")
    @classmethod
    def _typed(cls, image: Any) -> Any:
        """DynamoDB's typed attribute values (`{"S": ...}`) as plain values."""
        if not isinstance(image, Mapping):
            return image
        values = from_item(image)
        return {k: int(v) if isinstance(v, Decimal) else v for k, v in values.items()}


class StreamRecord(BaseModel):
    """A record of the agents table's stream, as Lambda delivers it (filtered to agent items)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: str = Field(alias="eventID")
    event_name: Literal["INSERT", "MODIFY", "REMOVE"] = Field(alias="eventName")
    dynamodb: StreamChange


class StreamBatch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    records: list[StreamRecord] = Field(alias="Records")


def status_change(record: StreamRecord) -> AgentStatusChanged | None:
    """The change of status a record holds, or None when the write kept the status."""
    change = record.dynamodb
    old, new = change.old_image, change.new_image
    if record.event_name == "REMOVE":
        if old is None:
            raise ValueError(f"REMOVE record {record.event_id} without its old image")
        removed_at = (
            datetime.fromtimestamp(change.approximate_creation, UTC)
            if change.approximate_creation is not None
            else datetime.now(UTC)
        )
        return AgentStatusChanged(
            tenant_id=old.tenant_id,
            agent_id=old.agent_id,
            from_status=old.status,
            to_status=AgentStatus.REMOVED,
            reason=None,
            time=iso(removed_at),
            version=old.version + 1,
        )
    if new is None:
        raise ValueError(f"{record.event_name} record {record.event_id} without its new image")
    if old is not None and old.status is new.status:
        return None
    return AgentStatusChanged(
        tenant_id=new.tenant_id,
        agent_id=new.agent_id,
        from_status=old.status if old is not None else None,
        to_status=new.status,
        reason=new.status_reason,
        time=new.updated_at,
        version=new.version,
    )


@dataclass(frozen=True)
class PublishOutcome:
    published: int  # events the bus accepted
    failed_records: list[str]  # sequence numbers of the records to retry (the first failed one and after)


def publish_status_changes(records: Sequence[StreamRecord], publisher: EventPublisher) -> PublishOutcome:
    """Publish the status changes among `records` (in their order). When the bus refuses an event, its record
    and every record after it are to be retried, and no later request is sent: nothing is left out. (Events
    after it in the same request may be out already: they come again with the retry.)"""
    changes = [(index, change) for index, record in enumerate(records) if (change := status_change(record))]
    failed: list[FailedEntry] = (
        publisher.put([change.bus_event() for _, change in changes]) if changes else []
    )
    if not failed:
        if changes:
            metrics.add_metric(name="StatusEventPublished", unit="Count", value=len(changes))
        return PublishOutcome(len(changes), [])
    first = min(entry.index for entry in failed)
    for entry in failed:
        if entry.error_code != "NotSent":
            change = changes[entry.index][1]
            logger.warning(
                "Status event not accepted by the bus; its record is retried",
                extra={
                    "agent_id": change.agent_id,
                    "to": change.to_status.value,
                    "version": change.version,
                    "error_code": entry.error_code,
                    "error_message": entry.error_message,
                },
            )
    refused = {entry.index for entry in failed}
    published = len(changes) - len(refused)
    if published:
        metrics.add_metric(name="StatusEventPublished", unit="Count", value=published)
    metrics.add_metric(name="StatusEventFailed", unit="Count", value=len(failed))
    first_record = changes[first][0]
    return PublishOutcome(published, [record.dynamodb.sequence_number for record in records[first_record:]])
