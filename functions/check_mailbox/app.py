"""The checker: one health check per message of the checks queue (SQS event source, partial batch
responses: a message that failed is retried, then goes to the dead-letter queue). A thin adapter over
`onboarding.health.check`."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from onboarding import deps as wiring
from onboarding.core.observability import logger, metrics
from onboarding.health.check import HealthChecker, MailboxProbe
from onboarding.health.models import CheckMessage
from onboarding.settings import CheckMailboxSettings, check_mailbox_settings


def _microsoft(settings: CheckMailboxSettings, credentials: Any) -> Any:
    """Microsoft 365 checks, built on first use (msal and requests load only then)."""

    @functools.cache
    def build() -> MailboxProbe:
        from onboarding.health.probes import MicrosoftProbe
        from onboarding.m365.graph import GraphClient
        from onboarding.m365.oauth import OAuthClient, client_secret_reader

        config = settings.m365
        oauth = OAuthClient(config, client_secret_reader(config.client_secret_arn))
        graph = GraphClient(config)
        return MicrosoftProbe(credentials, lambda: oauth, lambda: graph)

    return build


@wiring.cached
def deps() -> HealthChecker:
    settings = check_mailbox_settings()
    credentials = wiring.credential_store(settings.credentials_table_name, settings.credentials_key_arn)

    @functools.cache
    def exchange() -> MailboxProbe:
        from onboarding.health.probes import ExchangeProbe

        return ExchangeProbe(credentials, settings.exchange)

    return HealthChecker(
        wiring.agent_repository(settings.agents_table_name),
        exchange=exchange,
        microsoft=_microsoft(settings, credentials) if settings.m365_client_id else None,
        policy=settings.health,
    )


check_mailbox_settings()  # validated at cold start: a missing variable fails the init, naming it


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    """`batchItemFailures` names the messages to retry (ReportBatchItemFailures)."""
    failures = []
    for record in event.get("Records") or []:
        message_id = str(record.get("messageId", ""))
        try:
            message = CheckMessage.model_validate_json(record.get("body") or "")
        except ValidationError:
            logger.error(
                "Not a check message: left for the dead-letter queue", extra={"message_id": message_id}
            )
            failures.append({"itemIdentifier": message_id})
            continue
        logger.append_keys(agent_id=message.agent_id, cause=message.cause)
        try:
            report = deps().check(message)
        except Exception:
            logger.exception("Check failed: the message is retried")
            failures.append({"itemIdentifier": message_id})
            continue
        logger.info("Check done", extra={"outcome": report.outcome.value})
    return {"batchItemFailures": failures}
