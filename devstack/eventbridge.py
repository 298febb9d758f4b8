"""EventBridge, as far as the local stack needs it: Step Functions' "Execution Status Change" events reach
the functions whose `EventBridgeRule` events in template.yaml match them.

moto runs the workflows (the ASL really executes) but emits no events. Every execution's end passes through
one seam, `BaseExecutionWorkerCommunication.terminated` (the worker reports the final program state there);
while installed, it builds the event AWS sends for a STANDARD execution that ends and delivers it, on its
own thread (EventBridge invokes asynchronously), to each matching function. moto is pinned exactly in
requirements-dev.txt because of seams like this one.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.stepfunctions.parser.api import ExecutionStatus, StateMachineType
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

from devstack import template as tpl
from devstack.runtime import FunctionRunner

LOG = logging.getLogger(__name__)
STATUS_CHANGE = "Step Functions Execution Status Change"


def matches(pattern: Any, event: Any) -> bool:
    """EventBridge's matching for the patterns the template uses: every key of the pattern is in the event,
    a list of values matches any of them, a nested object matches recursively."""
    if isinstance(pattern, dict):
        return isinstance(event, dict) and all(
            key in event and matches(value, event[key]) for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        return any(matches(value, event) for value in pattern) if pattern else False
    return bool(pattern == event)


def _millis(moment: datetime.datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if moment else None


def status_change_event(execution: Any, *, region: str, account: str) -> dict[str, Any]:
    """The event AWS sends when a STANDARD execution ends (the fields our code or the rule read, and the
    usual envelope)."""
    machine = execution.state_machine
    base_arn = getattr(machine, "source_arn", None) or machine.arn  # a version's own state machine
    status = str(getattr(execution.exec_status, "value", execution.exec_status))
    return {
        "version": "0",
        "id": f"local-{execution.name}-{status}",
        "detail-type": STATUS_CHANGE,
        "source": "aws.states",
        "account": account,
        "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [execution.exec_arn],
        "detail": {
            "executionArn": execution.exec_arn,
            "stateMachineArn": base_arn,
            "name": execution.name,
            "status": status,
            "startDate": _millis(execution.start_date),
            "stopDate": _millis(execution.stop_date),
            "input": execution.input_data
            if isinstance(execution.input_data, str)
            else json.dumps(execution.input_data),
            "output": None,
            "error": execution.error,
            "cause": execution.cause,
        },
    }


class EventRouter:
    """Delivers an event to every function with a matching EventBridgeRule (patterns resolved with refs)."""

    def __init__(
        self, runners: dict[str, FunctionRunner], refs: dict[str, str], template: dict[str, Any]
    ) -> None:
        self.targets: list[tuple[Any, FunctionRunner]] = []
        for logical_id, body in tpl.resources(template, "AWS::Serverless::Function").items():
            for event in body["Properties"].get("Events", {}).values():
                if event.get("Type") == "EventBridgeRule" and logical_id in runners:
                    pattern = _resolved(event["Properties"]["Pattern"], refs)
                    self.targets.append((pattern, runners[logical_id]))
        self.delivered: list[tuple[str, dict[str, Any]]] = []  # (function, event): what the tests read
        self._threads: list[threading.Thread] = []

    def publish(self, event: dict[str, Any]) -> int:
        """Hand `event` to each matching function, each on its own thread; how many matched."""
        found = [runner for pattern, runner in self.targets if matches(pattern, event)]
        for runner in found:
            thread = threading.Thread(
                target=self._invoke, args=(runner, event), name="eventbridge", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return len(found)

    def _invoke(self, runner: FunctionRunner, event: dict[str, Any]) -> None:
        try:
            runner.invoke(event)
        except Exception:  # Lambda would retry, then send it to the function's dead-letter queue
            LOG.exception("%s failed on an EventBridge event", runner.name)
            return
        self.delivered.append((runner.name, event))

    def join(self, timeout: float = 30) -> None:
        for thread in list(self._threads):
            thread.join(timeout)


def _resolved(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in {"Ref", "Fn::Sub", "Fn::GetAtt"}:
        return tpl.resolve(value, refs)
    if isinstance(value, dict):
        return {key: _resolved(item, refs) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolved(item, refs) for item in value]
    return value


@contextmanager
def execution_ends_published(router: EventRouter, *, region: str, account: str) -> Iterator[EventRouter]:
    """While installed, every execution that ends FAILED, TIMED_OUT or ABORTED is published to `router`
    (SUCCEEDED too: no rule of ours matches it, as on AWS)."""
    original = BaseExecutionWorkerCommunication.terminated

    def terminated(self: BaseExecutionWorkerCommunication) -> None:
        original(self)
        execution = self.execution
        if getattr(execution, "stopped_by_request", False):
            # The interrupted wait (see `stop`) ends the program with an error; a stopped execution is ABORTED.
            execution.exec_status = ExecutionStatus.ABORTED
        if execution.sm_type != StateMachineType.STANDARD:
            return  # Express workflows send no status-change events
        router.publish(status_change_event(execution, region=region, account=account))

    original_stop = Execution.stop

    def stop(self: Execution, stop_date: datetime.datetime, error: str | None, cause: str | None) -> None:
        """StopExecution, reaching a task that waits for its token too: moto waits for the token on the
        execution's own thread for the task's whole timeout (up to a day here), and only then sees the stop.
        The waits are interrupted once the stop is set, as Step Functions ends such a task at once."""
        self.stopped_by_request = True  # type: ignore[attr-defined]
        original_stop(self, stop_date, error, cause)
        env = getattr(self.exec_worker, "env", None)
        if env is not None:
            for endpoint in list(env.callback_pool_manager._pool.values()):
                endpoint.interrupt_all()

    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]
    Execution.stop = stop  # type: ignore[method-assign]
    try:
        yield router
    finally:
        BaseExecutionWorkerCommunication.terminated = original  # type: ignore[method-assign]
        Execution.stop = original_stop  # type: ignore[method-assign]
