"""API Gateway events for invoking a handler in-process (tests, benches): the HTTP API (payload 2.0)
sample in `tests/events/`, shaped for a route, as API Gateway sends it after the JWT authorizer passed."""

from __future__ import annotations

import copy
import json
import urllib.parse
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parent.parent / "tests" / "events"


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def api_event(
    method: str,
    path: str,
    *,
    tenant: str | None = "demo",
    body: Any = None,
    raw_body: str | None = None,
    query: dict[str, str] | None = None,
    route: str | None = None,
    path_params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event, as API Gateway sends it after the JWT authorizer passed."""
    event = copy.deepcopy(load_event("http_api_event.json"))
    route_key = f"{method} {route or path}"
    event["routeKey"] = event["requestContext"]["routeKey"] = route_key
    # With a named stage, API Gateway puts the stage in front of the path (Powertools strips it).
    stage = event["requestContext"]["stage"]
    event["rawPath"] = event["requestContext"]["http"]["path"] = (
        path if stage == "$default" else f"/{stage}{path}"
    )
    event["requestContext"]["http"]["method"] = method
    claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    if tenant is None:
        del claims["custom:tenant_id"]
    else:
        claims["custom:tenant_id"] = tenant
    if query:
        event["queryStringParameters"] = query
        event["rawQueryString"] = urllib.parse.urlencode(query)
    if path_params:
        event["pathParameters"] = path_params
    if raw_body is not None:
        event["body"] = raw_body
    elif body is not None:
        event["body"] = json.dumps(body)
    return event
