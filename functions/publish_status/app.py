"""Publishes `Agent Status Changed` to the stack's EventBridge bus: consumes the agents table's stream,
filtered (FilterCriteria in template.yaml) to agent items. A thin adapter over
`onboarding.agents.events.publish_status_changes`.

A record the bus did not take fails, with every record after it (ReportBatchItemFailures): Lambda retries
from there, in order, and once the retries are spent the batch's position goes to the on-failure queue. A
batch that cannot be read fails whole, and Lambda bisects it down to the record at fault.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding import deps as wiring
from onboarding.agents import events
from onboarding.core import aws
from onboarding.core.eventbus import EventBridgePublisher, EventPublisher
from onboarding.core.observability import logger, metrics
from onboarding.settings import publish_status_settings

publish_status_settings()  # validated at cold start: a missing variable fails the init, naming it


@wiring.cached
def deps() -> EventPublisher:
    return EventBridgePublisher(publish_status_settings().event_bus_name, aws.client("events"))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    batch = events.StreamBatch.model_validate(event)
    outcome = events.publish_status_changes(batch.records, deps())
    return {"batchItemFailures": [{"itemIdentifier": number} for number in outcome.failed_records]}
