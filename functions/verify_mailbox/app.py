"""The verification workflow's task function: one step per invocation (see statemachine/)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding import deps as wiring
from onboarding.core.observability import logger, metrics
from onboarding.m365.config import M365Config
from onboarding.settings import verify_mailbox_settings
from onboarding.verification.steps import TaskInput, VerificationSteps

if TYPE_CHECKING:
    from onboarding.core.credentials import CredentialStore
    from onboarding.verification.microsoft import GraphVerifier


def _graph_verifier(config: M365Config, credentials: CredentialStore) -> Callable[[], GraphVerifier]:
    """Microsoft 365 verification, built on first use (msal and requests load only then)."""

    @functools.cache
    def build() -> GraphVerifier:
        from onboarding.m365.graph import GraphClient
        from onboarding.m365.oauth import OAuthClient, client_secret_reader
        from onboarding.verification.microsoft import GraphVerifier

        oauth = OAuthClient(config, client_secret_reader(config.client_secret_arn))
        graph = GraphClient(config)
        return GraphVerifier(credentials, lambda: oauth, lambda: graph)

    return build


verify_mailbox_settings()  # validated at cold start: a missing variable fails the init, naming it
# X-Ray subsegments for this function only: the X-Ray SDK (its requirements.in, not the layer) builds a
# botocore client when imported, which the HTTP functions' cold start could not afford.
tracer = Tracer()


@wiring.cached
def deps() -> VerificationSteps:
    """The steps with their repositories, credential store, Exchange and Microsoft 365 configuration."""
    settings = verify_mailbox_settings()
    credentials = wiring.credential_store(settings.credentials_table_name, settings.credentials_key_arn)
    m365 = settings.m365
    return VerificationSteps(
        wiring.agent_repository(settings.agents_table_name),
        wiring.invite_repository(settings.agents_table_name),
        credentials,
        settings.exchange,
        max_settings_rounds=settings.max_settings_rounds,
        graph=_graph_verifier(m365, credentials) if m365.enabled else None,
        check_interval=timedelta(minutes=settings.check_interval_minutes),  # the first check's spread
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # pydantic directly: Powertools' parse() (the same validation) imports every event model it ships (0.18x)
    task = TaskInput.model_validate(event)
    logger.append_keys(agent_id=task.agent_id, action=task.action, attempt=task.attempt)
    return deps().run(task).model_dump(mode="json")  # `code` always present (null) for the ASL
