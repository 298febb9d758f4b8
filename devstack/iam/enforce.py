"""IAM enforced on every AWS call a function or a state machine makes, locally and in the tests.

`install()` hooks every botocore client created from then on (ours through `onboarding.core.aws`, Powertools'
own, moto's Step Functions interpreter's). Before a call is serialized, the enforcer finds who makes it,
turns the call into the authorization requests AWS would evaluate (devstack/iam/requests.py: real ARNs,
condition keys with the call's values) and evaluates them against that caller's own statements from
template.yaml (devstack/iam/policy.py). A request no statement allows makes the call fail as AWS fails
it: botocore parses an `AccessDeniedException` response of the service's own protocol and raises its
`ClientError`, so the code's own error handling runs.

Who calls:
1. `acting_as(logical_id)` (the local stack's and the workflow tests' `FunctionRunner` invokes each handler
   under it), or `as_harness()` (the test set-up or the local stack itself, acting as the account);
2. else a handler module of template.yaml on the calling stack (a test that calls `app.lambda_handler`);
3. else moto's Step Functions interpreter on the stack: the state machine whose execution it runs;
4. else, when shipped code (layers/, functions/) is on the stack and no test called it: a caller of
   unknown identity, refused; with no shipped code (moto, the local stack's pollers), or shipped code
   called from a test (a test's set-up and assertions through our repositories), not a function's call:
   not evaluated.

Development and test infrastructure only: nothing here ships (layers/ and functions/ do).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.parsers import create_parser

from devstack.iam.policy import Request, Statement, allows
from devstack.iam.requests import Call, KeySchema, authorization_requests

ACCOUNT = "123456789012"  # moto's default account
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (str(ROOT / "layers") + os.sep, str(ROOT / "functions") + os.sep)  # what goes to AWS
TESTS = str(ROOT / "tests") + os.sep
_DENIAL = "iam_denial"  # key in botocore's request context


@dataclass(frozen=True)
class Principal:
    logical_id: str  # the function's or state machine's logical id in template.yaml
    session: str  # the role session: the function's name, the execution's name


HARNESS = Principal("<harness>", "")  # the account itself (test set-up, the local stack): not evaluated
UNKNOWN = Principal("<unknown>", "unknown")  # shipped code running as no known function: refused

_current: ContextVar[Principal | None] = ContextVar("iam_principal", default=None)


@contextlib.contextmanager
def acting_as(logical_id: str, session: str | None = None) -> Iterator[None]:
    """AWS calls in this block are made with the role of `logical_id` (a function or state machine)."""
    token = _current.set(Principal(logical_id, session or logical_id))
    try:
        yield
    finally:
        _current.reset(token)


@contextlib.contextmanager
def as_harness() -> Iterator[None]:
    """AWS calls in this block are the account's own (set-up, the local stack), not a function's."""
    token = _current.set(HARNESS)
    try:
        yield
    finally:
        _current.reset(token)


@dataclass(frozen=True)
class Decision:
    principal: Principal
    service: str  # botocore's name
    operation: str
    site: str | None  # `module:qualname` of the shipped code that made the call
    requests: tuple[Request, ...]
    denied: Request | None  # the first request no statement allows (None: allowed)


@dataclass
class Enforcer:
    """`policies()`: each role's statements resolved with the resources as they are now (the tests create
    keys and secrets per test); `handler_modules`: handler module -> function logical id;
    `state_machines`: state machine ARN -> logical id; `role_name(logical_id)`: the role's name."""

    policies: Callable[[], Mapping[str, list[Statement]]]
    handler_modules: Mapping[str, str]
    state_machines: Callable[[], Mapping[str, str]]
    key_schema: KeySchema
    role_name: Callable[[str], str]
    listeners: list[Callable[[Decision], None]] = field(default_factory=list)

    # -- who calls ---------------------------------------------------------------------------
    def principal(self, frame: FrameType | None) -> tuple[Principal | None, str | None]:
        """The caller (None: not a function's call) and the shipped call site, from the calling stack."""
        current = _current.get()
        found: Principal | None = None
        site: str | None = None
        shipped = tested = False
        while frame is not None:
            name = str(frame.f_globals.get("__name__", ""))
            filename = frame.f_code.co_filename
            is_shipped = filename.startswith(SHIPPED)
            if is_shipped and site is None:
                site = f"{name}:{frame.f_code.co_qualname}"
            shipped |= is_shipped
            tested |= filename.startswith(TESTS)
            if found is None and current is None:
                found = self._stack_principal(name, frame)
            frame = frame.f_back
        if current is not None:
            return current, site
        if found is not None:
            return found, site
        return (UNKNOWN if shipped and not tested else None), site

    def _stack_principal(self, module: str, frame: FrameType) -> Principal | None:
        if module in self.handler_modules:
            return Principal(self.handler_modules[module], self.handler_modules[module])
        if module.startswith("moto.stepfunctions.parser.asl.") and "env" in frame.f_locals:
            data = frame.f_locals["env"].states.context_object.context_object_data
            logical_id = self.state_machines().get(str(data["StateMachine"]["Id"]))
            return Principal(logical_id, str(data["Execution"]["Name"])) if logical_id else UNKNOWN
        return None

    # -- the decision -------------------------------------------------------------------------
    def decide(self, principal: Principal, call: Call, site: str | None) -> Decision:
        requests = tuple(authorization_requests(call, self.key_schema))
        statements = self.policies().get(principal.logical_id, [])  # unknown identity: no statement
        denied = next((r for r in requests if not any(allows(s, r) for s in statements)), None)
        decision = Decision(principal, call.service, call.operation, site, requests, denied)
        for listener in self.listeners:
            listener(decision)
        return decision

    def message(self, principal: Principal, request: Request) -> str:
        """AWS's words for a request no identity-based policy allows."""
        role = self.role_name(principal.logical_id) if principal is not UNKNOWN else "unknown"
        return (
            f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{principal.session} is not authorized to "
            f"perform: {request.action} on resource: {request.resource} because no identity-based policy "
            f"allows the {request.action} action"
        )

    # -- botocore hooks -----------------------------------------------------------------------
    def _before_parameter_build(self, params: Any, model: Any, context: Any, **_: Any) -> None:
        principal, site = self.principal(sys._getframe(1))
        if principal is None or principal is HARNESS:
            return
        service_model = model.service_model
        call = Call(
            service=service_model.service_name,
            operation=model.name,
            params=params,
            region=str(context.get("client_region") or "us-east-1"),
            account=ACCOUNT,
            iam_prefix=str(service_model.signing_name),
        )
        decision = self.decide(principal, call, site)
        if decision.denied is not None:
            context[_DENIAL] = self.message(principal, decision.denied)

    def _before_call(self, model: Any, context: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        message = context.get(_DENIAL)
        return None if message is None else access_denied(model, message)

    def register(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build", self._before_parameter_build)
        client.meta.events.register_first("before-call", self._before_call)


# ---------------------------------------------------------------- AccessDeniedException, on the wire
class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def _wire(protocol: str, service: str, message: str) -> tuple[int, dict[str, str], bytes]:
    """The error response the service sends (status, headers, body), in its protocol."""
    request_id = str(uuid.uuid4())
    if protocol == "json":
        # DynamoDB and Step Functions answer in the service framework's shape, KMS and Secrets Manager
        # with a bare type; botocore keeps the part after `#` either way.
        framework = service in ("dynamodb", "stepfunctions")
        error_type = (
            "com.amazon.coral.service#AccessDeniedException" if framework else "AccessDeniedException"
        )
        body = {"__type": error_type, "Message" if framework else "message": message}
        headers = {"x-amzn-RequestId": request_id, "Content-Type": "application/x-amz-json-1.1"}
        return 400, headers, json.dumps(body).encode()
    if protocol == "rest-json":  # Lambda, SES v2
        headers = {
            "x-amzn-RequestId": request_id,
            "x-amzn-ErrorType": "AccessDeniedException",
            "Content-Type": "application/json",
        }
        body = {"Message": message, "Type": "User"} if service == "lambda" else {"message": message}
        return 403, headers, json.dumps(body).encode()
    xml = (
        "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
        f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return 403, {"x-amzn-RequestId": request_id, "Content-Type": "text/xml"}, xml.encode()


def access_denied(model: Any, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    """What botocore makes of AWS's AccessDenied answer to this operation: the HTTP response and the
    parsed error, parsed by botocore's own parser for the service's protocol."""
    protocol = str(model.service_model.protocol)
    status, headers, body = _wire(protocol, model.service_model.service_name, message)
    wire_headers = HTTPHeaders()
    for name, value in headers.items():
        wire_headers[name] = value
    parsed: dict[str, Any] = create_parser(protocol).parse(
        {"status_code": status, "headers": wire_headers, "body": body}, model.output_shape
    )
    return AWSResponse("https://iam.local/", status, wire_headers, _Body(body)), parsed


# ---------------------------------------------------------------- installation
_original_create_client = botocore.session.Session.create_client
_installed: list[Enforcer] = []
_lock = threading.Lock()


def _create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
    client = _original_create_client(self, *args, **kwargs)
    for enforcer in _installed:
        enforcer.register(client)
    return client


def install(enforcer: Enforcer) -> Enforcer:
    """Enforce on every botocore client created from now on (one enforcer per process)."""
    with _lock:
        if _installed:
            raise RuntimeError("IAM enforcement is already installed in this process")
        _installed.append(enforcer)
        botocore.session.Session.create_client = _create_client
    return enforcer


def uninstall() -> None:
    with _lock:
        _installed.clear()
        botocore.session.Session.create_client = _original_create_client


def installed() -> Enforcer | None:
    return _installed[0] if _installed else None
