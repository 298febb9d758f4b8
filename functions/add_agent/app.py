"""The dashboard's agents API: every `/agents` route. A thin adapter over `onboarding.agents.manage`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding import deps as wiring
from onboarding.agents import manage as agents
from onboarding.agents.models import (
    Agent,
    AgentPage,
    AgentStatus,
    AgentTrace,
    ErrorResponse,
    GatewayError,
    NewAgent,
    ReconnectEmailRequested,
)
from onboarding.agents.start_watch import StartWatch
from onboarding.agents.store import AgentRepository
from onboarding.api import (
    current_tenant,
    current_tenant_name,
    error_response,
    register_error_handlers,
    without_unused_schemas,
)
from onboarding.core import aws
from onboarding.core.errors import ReconnectTooSoonError
from onboarding.core.observability import logger, metrics
from onboarding.health import manual as checks
from onboarding.health.models import HealthPolicy
from onboarding.invites import delivery as invites
from onboarding.invites import reconnect
from onboarding.settings import AgentsApiSettings, agents_api_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

agents_api_settings()  # validated at cold start: a missing variable fails the init, naming it

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)

_ERROR_BODY = {"application/json": {"model": ErrorResponse}}
_401 = {
    "description": "Missing or invalid access token (answered by API Gateway's JWT authorizer)",
    "content": {"application/json": {"model": GatewayError}},
}
_403 = {"description": "The token carries no valid tenant claim", "content": _ERROR_BODY}
_422 = {"description": "Invalid input; `error.details` names each field", "content": _ERROR_BODY}
_500 = {"description": "Unexpected error", "content": _ERROR_BODY}


def _errors(
    *, not_found: str | None = None, conflict: str | None = None, too_soon: str | None = None
) -> dict[int, Any]:
    """The error responses every route can give, and 404/409/429 where the route can give them."""
    responses: dict[int, Any] = {401: _401, 403: _403, 422: _422, 500: _500}
    if not_found:
        responses[404] = {"description": not_found, "content": _ERROR_BODY}
    if conflict:
        responses[409] = {"description": conflict, "content": _ERROR_BODY}
    if too_soon:
        responses[429] = {
            "description": too_soon,
            "content": _ERROR_BODY,
            "headers": {
                "Retry-After": {
                    "description": "Seconds until it may be asked again",
                    "schema": {"type": "integer"},
                }
            },
        }
    return responses


API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_NO_AGENT = "No such agent in this account (or an agent id no route accepts)"


@dataclass(frozen=True)
class Deps:
    settings: AgentsApiSettings
    repo: AgentRepository
    cleanup: agents.Cleanup

    @property
    def watch(self) -> StartWatch:
        """Settles attempts whose start died (onboarding.agents.start_watch) when the dashboard reads them."""
        cleanup = self.cleanup
        return StartWatch(self.repo, cleanup.credentials, cleanup.sfn, cleanup.state_machine_arn)


@wiring.cached
def deps() -> Deps:
    settings = agents_api_settings()
    return Deps(
        settings=settings,
        repo=wiring.agent_repository(settings.agents_table_name),
        cleanup=agents.Cleanup(
            wiring.credential_store(settings.credentials_table_name),
            aws.LazyClient("stepfunctions"),
            settings.state_machine_arn,
        ),
    )


def _tenant() -> str:
    return current_tenant(app, deps().settings.tenant_claim)


def _repo() -> AgentRepository:
    return deps().repo


@app.post(
    "/agents",
    summary="Add an agent",
    operation_id="addAgent",
    responses={
        201: {"description": "Created", "content": {"application/json": {"model": Agent}}},
        **_errors(conflict="This mailbox is already an agent of this account"),
    },
)
def add_agent(new: NewAgent) -> Response[dict[str, object]]:
    tenant_name = current_tenant_name(app, deps().settings.tenant_name_claim)
    agent = agents.add_agent(_repo(), _tenant(), new, tenant_name=tenant_name)
    return Response(
        status_code=HTTPStatus.CREATED.value,
        content_type=content_types.APPLICATION_JSON,
        body=agent.api_dict(),
        headers={"Location": f"/agents/{agent.agent_id}"},
    )


@app.get(
    "/agents",
    summary="List agents",
    operation_id="listAgents",
    responses={
        200: {"description": "A page of agents", "content": {"application/json": {"model": AgentPage}}},
        **_errors(),
    },
)
def list_agents(
    status: Annotated[AgentStatus | None, Query(description="Only agents in this status")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100, description="Page size (at most 100)")] = None,
    next_token: Annotated[str | None, Query(alias="nextToken", max_length=2048)] = None,
) -> AgentPage:
    return agents.list_agents(
        _repo(),
        _tenant(),
        status=status,
        limit=limit or deps().settings.default_page_size,
        next_token=next_token,
        watch=deps().watch,
    )


@app.get(
    "/agents/<agentId>",
    summary="Read an agent",
    operation_id="getAgent",
    responses={
        200: {"description": "The agent", "content": {"application/json": {"model": Agent}}},
        **_errors(not_found=_NO_AGENT),
    },
)
def get_agent(agentId: Annotated[str, Path(max_length=64)]) -> Agent:
    return agents.get_agent(_repo(), _tenant(), agentId, deps().watch)


@app.get(
    "/agents/<agentId>/trace",
    summary="Read the IT admin's trace of the agent's last connection attempt",
    operation_id="getAgentTrace",
    responses={
        200: {
            "description": "Each step of discovery and verification (no secrets); trace is null before the "
            "first attempt",
            "content": {"application/json": {"model": AgentTrace}},
        },
        **_errors(not_found=_NO_AGENT),
    },
)
def get_agent_trace(agentId: Annotated[str, Path(max_length=64)]) -> AgentTrace:
    return agents.get_agent_trace(_repo(), _tenant(), agentId)


@app.delete(
    "/agents/<agentId>",
    summary="Remove an agent",
    description="Idempotent: removing an agent that is not there (any more) is a 204 as well.",
    operation_id="removeAgent",
    responses={
        204: {"description": "Removed", "content": {}},
        **_errors(
            # A missing agent is a 204 (idempotent); only a path no route accepts is a 404.
            not_found="An agent id no route accepts",
            conflict="The agent kept changing while it was removed; try again",
        ),
    },
)
def remove_agent(agentId: Annotated[str, Path(max_length=64)]) -> Response[None]:
    agents.remove_agent(_repo(), _tenant(), agentId, deps().cleanup)
    return Response(status_code=HTTPStatus.NO_CONTENT.value, body=None)


@app.post(
    "/agents/<agentId>/invite",
    summary="Send the invite again",
    description="A new link replaces the previous one. 409 once the mailbox is verified or the last invite bounced.",
    operation_id="resendInvite",
    responses={
        202: {"description": "Invite requested", "content": {"application/json": {"model": Agent}}},
        **_errors(
            not_found=_NO_AGENT,
            conflict="No invite can help now: the mailbox is connected or being connected, or the invite bounced",
        ),
    },
)
def resend_invite(agentId: Annotated[str, Path(max_length=64)]) -> Response[dict[str, object]]:
    agent = invites.request_invite(_repo(), _tenant(), agentId, deps().watch)
    return Response(
        status_code=HTTPStatus.ACCEPTED.value,
        content_type=content_types.APPLICATION_JSON,
        body=agent.api_dict(),
    )


# -- reconnect emails (issue #20) ---------------------------------------------------------------------
_429: OpenAPIResponse = {
    "description": "A reconnect email was sent recently: `Retry-After` (seconds) says when another may be",
    "headers": {
        "Retry-After": {"description": "Seconds until one may be asked for", "schema": {"type": "integer"}}
    },
    "content": {"application/json": {"model": ErrorResponse}},
}


def _reconnect_policy() -> reconnect.ReconnectPolicy:
    return reconnect.ReconnectPolicy(
        min_interval=timedelta(hours=deps().settings.reconnect_email_interval_hours)
    )


@app.post(
    "/agents/<agentId>/reconnect",
    summary="Email the mailbox owner a reconnect link",
    description="For an agent that needs reconnecting (`needs_reconnect`) or is `disconnected`: a new single-use "
    "link to the connect page, which says what happened and asks only for what is needed. At most one email per "
    "agent per interval (the ReconnectEmailIntervalHours parameter): 429 with Retry-After within it.",
    operation_id="sendReconnectEmail",
    responses={
        202: {
            "description": "Reconnect email requested",
            "content": {"application/json": {"model": ReconnectEmailRequested}},
        },
        429: _429,
        **_errors(not_found=_NO_AGENT, conflict="The agent needs no reconnect (it is connected, or not yet)"),
    },
)
def send_reconnect_email(agentId: Annotated[str, Path(max_length=64)]) -> Response[str]:
    try:
        reconnect.reconnect_from_dashboard(_repo(), _tenant(), agentId, policy=_reconnect_policy())
    except ReconnectTooSoonError as error:
        response = error_response(error.status, error.code, error.message, error.details)
        response.headers["Retry-After"] = str(error.retry_after)
        return response
    record = _repo().get(_tenant(), agentId)
    body = ReconnectEmailRequested(
        agent=record, reconnect_email_requested_at=record.health.reconnect_email_requested_at or ""
    )
    return Response(
        status_code=HTTPStatus.ACCEPTED.value,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(by_alias=True),
    )


@app.post(
    "/agents/<agentId>/check",
    summary="Check the mailbox now",
    description="Queues a health check of a connected mailbox (the same check as the schedule's: one sign-in "
    "with the stored settings); the agent's health fields show its result within seconds. A password the "
    "server refused is never tried again (409: ask the owner to reconnect), and a locked account is not "
    "tried inside its lockout window (429).",
    operation_id="checkAgent",
    responses={
        202: {"description": "Check queued", "content": {"application/json": {"model": Agent}}},
        **_errors(
            not_found=_NO_AGENT,
            conflict="Nothing to check: the mailbox is not connected yet, or it needs reconnecting",
            too_soon="Checked on request a moment ago, or the account is locked: see Retry-After",
        ),
    },
)
def check_agent(agentId: Annotated[str, Path(max_length=64)]) -> Response[dict[str, object]]:
    settings = deps().settings
    agent = checks.request_check(
        _repo(),
        aws.client("sqs"),
        settings.checks_queue_url,
        _tenant(),
        agentId,
        policy=HealthPolicy(manual_min_interval=timedelta(seconds=settings.manual_check_interval_seconds)),
    )
    return Response(
        status_code=HTTPStatus.ACCEPTED.value,
        content_type=content_types.APPLICATION_JSON,
        body=agent.api_dict(),
    )


def _security_schemes() -> dict[str, Any]:
    """Every route needs the dashboard's access token (API Gateway's JWT authorizer checks it first).

    Imported here: Powertools' OpenAPI document models cost about 0.3x of a bare boto3 import at cold
    start (bench/cold_start.py), and only this route needs them (validation does not).
    """
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    return {"bearerAuth": HTTPBearer(description="The dashboard's access token (JWT)", bearerFormat="JWT")}


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(
            without_unused_schemas(
                json.loads(
                    app.get_openapi_json_schema(
                        title="Mailbox onboarding API",
                        version="1.0.0",
                        security_schemes=_security_schemes(),
                        security=[{"bearerAuth": []}],
                    )
                )
            )
        ),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = app.resolve(event, context)
    # Agents are per-tenant data: never cached by a browser or proxy, never sniffed as another type.
    response["headers"] = {**(response.get("headers") or {}), **API_HEADERS}
    return response
