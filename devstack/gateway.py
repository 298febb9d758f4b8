"""A local HTTP API: turns HTTP requests into API Gateway HTTP API (payload 2.0) events for the real
handlers, routed by the HttpApi events of template.yaml, and plays the JWT authorizer.

Each function is invoked as one warm Lambda instance would be: one request at a time (a lock per
function), with a Lambda-like context object. Extra local-only routes live under `/_local/`.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request, Response

from devstack import tokens
from devstack.runtime import FunctionRunner
from devstack.template import Route, http_routes

LocalRoute = Callable[[Request], Response]
WsgiApp = Callable[[dict[str, Any], Any], Any]


class Gateway:
    def __init__(self, runners: dict[str, FunctionRunner], routes: list[Route] | None = None) -> None:
        """`runners`: one per function logical id, shared with whatever else invokes the functions."""
        self.routes = routes if routes is not None else http_routes()
        self.runners = runners
        self.local_routes: dict[tuple[str, str], LocalRoute] = {}
        self.mounts: dict[str, WsgiApp] = {}

    def add_local_route(self, method: str, path: str, view: LocalRoute) -> None:
        self.local_routes[(method, path)] = view

    def mount(self, prefix: str, app: WsgiApp) -> None:
        """A local-only WSGI app under `prefix` (a `/_local/...` path), called as mounted apps are: the
        prefix moved from PATH_INFO to SCRIPT_NAME, so the app builds its own links under it."""
        self.mounts[prefix.rstrip("/")] = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        for prefix, app in self.mounts.items():
            if path == prefix or path.startswith(prefix + "/"):
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix) :]
                print(f"{environ.get('REQUEST_METHOD')} {prefix}{environ['PATH_INFO']}", flush=True)
                return app(environ, start_response)
        request = Request(environ)
        response = self.dispatch(request)
        print(f"{request.method} {request.path} -> {response.status_code}", flush=True)  # access log
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        local = self.local_routes.get((request.method, request.path))
        if local is not None:
            return local(request)
        for route in self.routes:
            params = route.match(request.method, request.path)
            if params is None:
                continue
            claims: dict[str, Any] | None = None
            if route.authorized:
                try:
                    claims = tokens.verify(request.headers.get("Authorization"))
                except tokens.InvalidTokenError:
                    # What API Gateway's JWT authorizer answers (its body cannot be customised).
                    return Response(
                        json.dumps({"message": "Unauthorized"}),
                        status=401,
                        content_type="application/json",
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                    )
            event = build_event(request, route, params, claims)
            result = self.runners[route.function].invoke(event)
            return to_response(result)
        # API Gateway answers an unknown route (or a known path with another method) this way.
        return Response(json.dumps({"message": "Not Found"}), status=404, content_type="application/json")


def build_event(
    request: Request, route: Route, params: dict[str, str], claims: dict[str, Any] | None
) -> dict[str, Any]:
    body_bytes = request.get_data()
    content_type = request.headers.get("Content-Type", "")
    is_text = not body_bytes or content_type.startswith(
        ("text/", "application/json", "application/x-www-form")
    )
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        name = key.lower()
        if name == "cookie":
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    query = {key: ",".join(values) for key, values in request.args.lists()}
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{route.method} {route.path}",
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode("latin-1"),
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": request.host,
            "domainPrefix": request.host.split(".")[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": request.remote_addr or "127.0.0.1",
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{route.method} {route.path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    if request.cookies:
        event["cookies"] = [f"{k}={v}" for k, v in request.cookies.items(multi=True)]
    if query:
        event["queryStringParameters"] = query
    if params:
        event["pathParameters"] = params
    if body_bytes:
        event["body"] = (
            body_bytes.decode("utf-8", "replace") if is_text else base64.b64encode(body_bytes).decode()
        )
    return event


def to_response(result: Any) -> Response:
    """Payload 2.0 response mapping, including its inference for handlers returning plain values."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return Response(json.dumps(result), status=200, content_type="application/json")
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    response = Response(data, status=int(result["statusCode"]))
    response.headers.pop("Content-Type", None)
    for key, value in (result.get("headers") or {}).items():
        response.headers[key] = str(value)
    for key, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            response.headers.add(key, str(value))
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response
