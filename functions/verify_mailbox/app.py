"""The verification workflow's task function: one step per invocation (see statemachine/)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding import deps as wiring
from onboarding.observability import logger, metrics
from onboarding.settings import verify_mailbox_settings
from onboarding.verification import TaskInput, VerificationSteps

verify_mailbox_settings()  # validated at cold start: a missing variable fails the init, naming it
# X-Ray subsegments for this function only: the X-Ray SDK (its requirements.txt, not the layer) builds a
# botocore client when imported, which the HTTP functions' cold start could not afford.
tracer = Tracer()


@wiring.cached
def deps() -> VerificationSteps:
    """The steps with their repositories, credential store and Exchange client configuration."""
    settings = verify_mailbox_settings()
    return VerificationSteps(
        wiring.agent_repository(settings.agents_table_name),
        wiring.invite_repository(settings.agents_table_name),
        wiring.credential_store(settings.credentials_table_name, settings.credentials_key_arn),
        settings.exchange,
        max_settings_rounds=settings.max_settings_rounds,
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = parse(event=event, model=TaskInput)
    logger.append_keys(agent_id=task.agent_id, action=task.action, attempt=task.attempt)
    return deps().run(task).model_dump(mode="json")  # `code` always present (null) for the ASL
