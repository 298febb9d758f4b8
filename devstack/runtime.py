"""How the local stack runs a Lambda handler: imported once, invoked one event at a time."""

from __future__ import annotations

import importlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.iam.enforce import acting_as


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that Powertools and our handlers read."""

    function_name: str
    timeout_seconds: float = 30.0
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


# All functions share this process (and so os.environ): their cold starts take turns.
_INIT_LOCK = threading.Lock()


class FunctionRunner:
    """Imports a handler once and invokes it serially, like one warm Lambda instance.

    With `environment`, the import (the function's cold start, where it reads and validates its settings)
    sees exactly that environment on top of the process's AWS_* plumbing, and nothing another function
    was given: a variable the template does not give the function is missing here as on AWS."""

    def __init__(
        self,
        name: str,
        module: str,
        handler: str,
        lock: threading.Lock | None = None,
        environment: dict[str, str] | None = None,
        hidden: frozenset[str] = frozenset(),
        logical_id: str | None = None,
    ) -> None:
        self.name = name
        self.logical_id = logical_id or name  # whose role its AWS calls use (devstack/iam/enforce.py)
        self.module = module
        self.handler_name = handler
        self.environment = environment
        self.hidden = hidden  # variables other functions are given: not this one's business
        self._lock = lock or threading.Lock()
        self._handler: Callable[[dict[str, Any], Any], Any] | None = None
        self.invocations = 0

    def load(self) -> None:
        """The cold start: import the handler module (settings are validated there), as the function."""
        with self._lock, acting_as(self.logical_id, session=self.name):
            self._load()

    def _load(self) -> None:
        if self._handler is not None:
            return
        if self.environment is None:
            self._handler = getattr(importlib.import_module(self.module), self.handler_name)
            return
        with _INIT_LOCK:
            saved = dict(os.environ)
            for name in self.hidden:
                os.environ.pop(name, None)
            os.environ.update(self.environment)
            try:
                self._handler = getattr(importlib.import_module(self.module), self.handler_name)
            finally:
                os.environ.clear()
                os.environ.update(saved)

    def instance(self) -> FunctionRunner:
        """Another warm instance of this function (an event source running invocations at once): the handler
        this one imported (loaded now, if it was not), its own lock. No cold start of its own: a cold start
        swaps the process's environment, which must not happen while other functions run."""
        self.load()
        other = FunctionRunner(
            self.name, self.module, self.handler_name, None, self.environment, self.hidden, self.logical_id
        )
        other._handler = self._handler
        return other

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock, acting_as(self.logical_id, session=self.name):
            self._load()
            self.invocations += 1
            return self._handler(event, LambdaContext(function_name=self.name))  # type: ignore[misc]


def runners_from_template(
    template: dict[str, Any] | None = None,
    *,
    prefix: str = "local",
    environments: dict[str, dict[str, str]] | None = None,
) -> dict[str, FunctionRunner]:
    """One runner per AWS::Serverless::Function, keyed by logical id; the name is `<prefix>-<logical id>`.
    `environments` (by logical id): what each function's cold start sees (see FunctionRunner)."""
    from devstack import template as tpl

    template = template or tpl.load_template()
    # Powertools keeps the resolver's current request in a class attribute (BaseRouter.current_event), so
    # two HTTP functions running at once in one process would read each other's request. On AWS each
    # function has its own process; here the functions behind the gateway take turns on one lock.
    http_lock = threading.Lock()
    declared = frozenset(name for env in (environments or {}).values() for name in env)
    runners = {}
    for logical_id, body in tpl.resources(template, "AWS::Serverless::Function").items():
        module, handler = tpl.function_module(body)
        events = body["Properties"].get("Events", {}).values()
        shared = http_lock if any(event.get("Type") == "HttpApi" for event in events) else None
        environment = None if environments is None else environments[logical_id]
        runners[logical_id] = FunctionRunner(
            f"{prefix}-{logical_id}",
            module,
            handler,
            shared,
            environment,
            hidden=declared,
            logical_id=logical_id,
        )
    return runners
