"""The verification workflow's task function: one step per invocation (see statemachine/)."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding.credentials import credential_store
from onboarding.observability import logger, metrics
from onboarding.settings import verify_mailbox_settings
from onboarding.store import agent_repository
from onboarding.tracing import tracer
from onboarding.verification import TaskInput, VerificationSteps

verify_mailbox_settings()  # validated at cold start: a missing variable fails the init, naming it


@functools.cache
def _steps() -> VerificationSteps:
    settings = verify_mailbox_settings()
    return VerificationSteps(
        agent_repository(settings.agents_table_name),
        credential_store(settings.credentials_table_name, settings.credentials_key_arn),
        settings.exchange,
        max_settings_rounds=settings.max_settings_rounds,
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = parse(event=event, model=TaskInput)
    logger.append_keys(agent_id=task.agent_id, action=task.action, attempt=task.attempt)
    return _steps().run(task).model_dump(mode="json")  # `code` always present (null) for the ASL
