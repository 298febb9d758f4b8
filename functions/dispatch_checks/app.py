"""The schedule's target (EventBridge Scheduler, every few minutes): the due health checks go on the checks
queue. A thin adapter over `onboarding.health.dispatch`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding import deps as wiring
from onboarding.core import aws
from onboarding.core.observability import logger, metrics
from onboarding.health.dispatch import Dispatcher, DueChecks
from onboarding.settings import dispatch_checks_settings


@wiring.cached
def deps() -> Dispatcher:
    settings = dispatch_checks_settings()
    return Dispatcher(
        DueChecks(settings.agents_table_name, aws.client("dynamodb")),
        aws.client("sqs"),
        settings.checks_queue_url,
        settings.health,
    )


dispatch_checks_settings()  # validated at cold start: a missing variable fails the init, naming it


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    report = deps().dispatch()
    return {"queries": report.queries, "leased": report.leased, "sent": report.sent, "failed": report.failed}
