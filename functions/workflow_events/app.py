"""Step Functions' own word that a verification workflow died (EventBridge "Step Functions Execution Status
Change": FAILED, TIMED_OUT, ABORTED): its agent is settled. A thin adapter over
`onboarding.agents.dead_workflows.settle`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding import deps as wiring
from onboarding.agents import dead_workflows
from onboarding.agents.store import AgentRepository
from onboarding.core.credentials import CredentialStore
from onboarding.core.observability import logger, metrics
from onboarding.settings import workflow_events_settings


@wiring.cached
def deps() -> tuple[AgentRepository, CredentialStore]:
    settings = workflow_events_settings()
    return (
        wiring.agent_repository(settings.agents_table_name),
        wiring.credential_store(settings.credentials_table_name),  # no key: it can only delete
    )


workflow_events_settings()  # validated at cold start: a missing variable fails the init, naming it


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, bool]:
    change = dead_workflows.ExecutionStatusChange.model_validate(event)
    repo, credentials = deps()
    return {"settled": dead_workflows.settle(repo, credentials, change)}
