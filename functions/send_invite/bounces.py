"""Bounces and complaints of invite emails (SES configuration set -> SNS -> here): the agent becomes
`invite_bounced`, and the dashboard can no longer resend to that address. A thin adapter over
`onboarding.invites.delivery.record_delivery_problem`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding import deps as wiring
from onboarding.agents.store import AgentRepository
from onboarding.core.observability import logger, metrics
from onboarding.invites import delivery as invites
from onboarding.invites.models import SnsNotifications
from onboarding.settings import invite_events_settings


@wiring.cached
def deps() -> AgentRepository:
    return wiring.agent_repository(invite_events_settings().agents_table_name)


invite_events_settings()  # validated at cold start: a missing variable fails the init, naming it


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    notifications = SnsNotifications.model_validate(event).notifications
    repo = deps()
    changed = sum(invites.record_delivery_problem(repo, n) is not None for n in notifications)
    return {"notifications": len(notifications), "agentsChanged": changed}
