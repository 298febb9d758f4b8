"""HTTP plumbing shared by the API functions: the tenant from the verified token, and error bodies.

Every error leaves as `{"error": {"code", "message", "details"}}`: a domain error with the HTTP status
its class names (`onboarding.core.errors`), anything unexpected as a 500 that reveals nothing.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import TypeAdapter

from onboarding.agents.models import TenantId
from onboarding.core.errors import DomainError, MissingTenantError
from onboarding.core.observability import logger
from onboarding.invites.models import clean_tenant_name

_TENANT: TypeAdapter[str] = TypeAdapter(TenantId)


def error_response(
    status: HTTPStatus,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _validation_details(errors: Any) -> list[dict[str, Any]]:
    details = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        # ("body", "email") -> "email"; ("query", "limit") -> "limit"; ("body",) -> the body as a whole
        field = ".".join(location[1:]) if len(location) > 1 else (location[0] if location else None)
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":
            field, message = "body", "the request body is not valid JSON"
        details.append({"field": field, "message": message, "type": error.get("type")})
    return details


def current_tenant(app: APIGatewayHttpResolver, claim: str) -> str:
    """The tenant id from the verified JWT claim: never from the body, path or query."""
    authorizer = app.current_event.request_context.authorizer
    claims = (authorizer.jwt_claim if authorizer else None) or {}
    value = claims.get(claim)
    try:
        return str(_TENANT.validate_python(value))
    except ValueError as error:
        raise MissingTenantError(f"The access token carries no valid '{claim}' claim") from error


def current_tenant_name(app: APIGatewayHttpResolver, claim: str) -> str | None:
    """The tenant's display name from a verified JWT claim (for invite emails), if usable."""
    authorizer = app.current_event.request_context.authorizer
    claims = (authorizer.jwt_claim if authorizer else None) or {}
    return clean_tenant_name(claims.get(claim))


def register_error_handlers(app: APIGatewayHttpResolver) -> None:
    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response[str]:
        return error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "validation_error",
            "The request is not valid: see details",
            _validation_details(error.errors()),
        )

    @app.exception_handler(DomainError)
    def _domain(error: DomainError) -> Response[str]:
        # An error may carry headers of its own (a 429's Retry-After).
        return error_response(
            error.status, error.code, error.message, error.details, getattr(error, "headers", None)
        )

    @app.not_found
    def _not_found(_: NotFoundError) -> Response[str]:
        return error_response(HTTPStatus.NOT_FOUND, "route_not_found", "No such route")

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[str]:
        logger.exception("Unhandled error")
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong on our side; try again"
        )


_SCHEMA_REF = "#/components/schemas/"


def without_unused_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document less the component schemas no operation reaches (Powertools adds its own
    validation-error models, which our error handler replaces with `ErrorResponse`)."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    reached: set[str] = set()
    pending = [{k: v for k, v in document.items() if k != "components"}]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_SCHEMA_REF):
                name = ref.removeprefix(_SCHEMA_REF)
                if name not in reached and name in schemas:
                    reached.add(name)
                    pending.append(schemas[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    if schemas:
        document["components"]["schemas"] = {k: v for k, v in schemas.items() if k in reached}
    return document
