"""Sends invite and reconnect emails: consumes the agents table's stream, filtered (FilterCriteria in
template.yaml) to the records that ask for an invite or on which a reconnect email became pending. A thin
adapter over `onboarding.invites.delivery.deliver_invite` and `onboarding.invites.reconnect.deliver_reconnect`.

Each record succeeds or fails on its own (ReportBatchItemFailures): a failed record is retried by
Lambda and, once its retries are spent, lands in the on-failure destination (SQS).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

# Imported before anything loads pydantic: Powertools' batch then leaves out its pydantic event models (every
# event source's, 0.26x of a bare boto3 import at cold start). Records are its data classes, and our model
# validates the new image (tests/functions/test_cold_imports.py guards the order).
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding import deps as wiring
from onboarding.agents.models import AgentStatus
from onboarding.agents.store import AgentRepository
from onboarding.core import aws
from onboarding.core.observability import logger, metrics
from onboarding.invites import delivery as invites
from onboarding.invites import reconnect
from onboarding.invites.delivery import InviteConfig
from onboarding.invites.mailer import Mailer
from onboarding.invites.models import InviteRequested, ReconnectRequested
from onboarding.invites.store import InviteRepository
from onboarding.settings import send_invite_settings

send_invite_settings()  # validated at cold start: a missing variable fails the init, naming it

processor = BatchProcessor(
    event_type=EventType.DynamoDBStreams,
    raise_on_entire_batch_failure=False,  # always answer with batchItemFailures, never a bare error
)


@dataclass(frozen=True)
class Deps:
    repo: AgentRepository
    invites: InviteRepository
    mailer: Mailer
    config: InviteConfig
    reconnect: reconnect.ReconnectLinkPolicy


@wiring.cached
def deps() -> Deps:
    settings = send_invite_settings()
    return Deps(
        repo=wiring.agent_repository(settings.agents_table_name),
        invites=wiring.invite_repository(settings.agents_table_name),
        mailer=Mailer(
            settings.sender, aws.client("sesv2"), configuration_set=settings.ses_configuration_set or None
        ),
        config=InviteConfig(
            public_base_url=settings.link_base_url,
            valid_for=timedelta(days=settings.invite_valid_days),
            max_send_attempts=settings.invite_max_send_attempts,
        ),
        reconnect=reconnect.ReconnectLinkPolicy(
            valid_for=timedelta(days=settings.invite_valid_days),
            max_send_attempts=settings.invite_max_send_attempts,
        ),
    )


def record_handler(record: DynamoDBRecord) -> str:
    image = record.dynamodb.new_image if record.dynamodb else None
    wired = deps()
    if image is not None and image.get("status") != AgentStatus.INVITE_PENDING.value:
        # Not an invite: a reconnect (or password-expiry) email became pending (the second FilterCriteria).
        wanted = ReconnectRequested.model_validate(image)
        logger.append_keys(agent_id=wanted.agent_id, reconnect_version=wanted.reconnect_version)
        outcome = reconnect.deliver_reconnect(
            wanted,
            repo=wired.repo,
            invites=wired.invites,
            mailer=wired.mailer,
            public_base_url=wired.config.public_base_url,
            policy=wired.reconnect,
        )
        return outcome.value
    request = InviteRequested.model_validate(image)
    logger.append_keys(agent_id=request.agent_id, invite_version=request.invite_version)
    outcome = invites.deliver_invite(
        request, repo=wired.repo, invites=wired.invites, mailer=wired.mailer, config=wired.config
    )
    return outcome.value


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    )
