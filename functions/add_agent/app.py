"""The dashboard's agents API: every `/agents` route. A thin adapter over `onboarding.agents`."""

from __future__ import annotations

import functools
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding import agents, invites
from onboarding.api import current_tenant, current_tenant_name, register_error_handlers
from onboarding.credentials import credential_store
from onboarding.models import Agent, AgentPage, AgentStatus, ErrorResponse, NewAgent
from onboarding.observability import logger, metrics
from onboarding.settings import agents_api_settings
from onboarding.store import agent_repository

agents_api_settings()  # validated at cold start: a missing variable fails the init, naming it

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)

_ERROR_BODY = {"application/json": {"model": ErrorResponse}}
_ERRORS: dict[int, Any] = {
    403: {"description": "The token carries no valid tenant claim", "content": _ERROR_BODY},
    404: {"description": "No such agent in this account", "content": _ERROR_BODY},
    409: {"description": "Conflict (duplicate mailbox, or the agent changed)", "content": _ERROR_BODY},
    422: {"description": "Invalid input; `error.details` names each field", "content": _ERROR_BODY},
    500: {"description": "Unexpected error", "content": _ERROR_BODY},
}


def _tenant() -> str:
    return current_tenant(app, agents_api_settings().tenant_claim)


def _repo() -> Any:
    return agent_repository(agents_api_settings().agents_table_name)


@functools.cache
def _cleanup() -> agents.Cleanup:
    settings = agents_api_settings()
    return agents.Cleanup(credential_store(settings.credentials_table_name), settings.state_machine_arn)


@app.post(
    "/agents",
    summary="Add an agent",
    responses={201: {"description": "Created", "content": {"application/json": {"model": Agent}}}, **_ERRORS},
)
def add_agent(new: NewAgent) -> Response[dict[str, object]]:
    tenant_name = current_tenant_name(app, agents_api_settings().tenant_name_claim)
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
    responses={
        200: {"description": "A page of agents", "content": {"application/json": {"model": AgentPage}}},
        **_ERRORS,
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
        limit=limit or agents_api_settings().default_page_size,
        next_token=next_token,
    )


@app.get(
    "/agents/<agentId>",
    summary="Read an agent",
    responses={
        200: {"description": "The agent", "content": {"application/json": {"model": Agent}}},
        **_ERRORS,
    },
)
def get_agent(agentId: Annotated[str, Path(max_length=64)]) -> Agent:
    return agents.get_agent(_repo(), _tenant(), agentId)


@app.delete(
    "/agents/<agentId>",
    summary="Remove an agent",
    responses={204: {"description": "Removed", "content": {}}, **_ERRORS},
)
def remove_agent(agentId: Annotated[str, Path(max_length=64)]) -> Response[None]:
    agents.remove_agent(_repo(), _tenant(), agentId, _cleanup())
    return Response(status_code=HTTPStatus.NO_CONTENT.value, body=None)


@app.post(
    "/agents/<agentId>/invite",
    summary="Send the invite again",
    description="A new link replaces the previous one. 409 once the mailbox is verified or the last invite bounced.",
    responses={
        202: {"description": "Invite requested", "content": {"application/json": {"model": Agent}}},
        **_ERRORS,
    },
)
def resend_invite(agentId: Annotated[str, Path(max_length=64)]) -> Response[dict[str, object]]:
    agent = invites.request_invite(_repo(), _tenant(), agentId)
    return Response(
        status_code=HTTPStatus.ACCEPTED.value,
        content_type=content_types.APPLICATION_JSON,
        body=agent.api_dict(),
    )


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(title="Mailbox onboarding API", version="1.0.0"),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
