"""Scheduled rules, locally: what the `Schedule` events of template.yaml do on AWS.

SAM turns a function's `Type: Schedule` event into an EventBridge rule with a `ScheduleExpression` and the
function as its target; EventBridge then invokes the function asynchronously, once a period, with a
"Scheduled Event". Here one thread per rule does the same: it waits one period (a rule first fires one
period after it is created, as `rate()` does), invokes the handler with the event AWS sends, and waits again.
The handler runs through its `FunctionRunner`, so its AWS calls are held to its own policy.

`rate(N minute|minutes|hour|hours|day|days)` is implemented (what the template uses); a `cron()` expression
fails the start, naming the rule, rather than never firing. `period` overrides every rule's rate for the
local stack only (`make dev CHECK_INTERVAL=2m` runs the dispatcher more often: see devstack/stack.py).
A run can be asked for at once (`Scheduler.run_now`, `POST /_local/schedules/<name>/run`): what the tests
use instead of waiting minutes.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from devstack import template as tpl
from devstack.runtime import FunctionRunner

PATH = "/_local/schedules"  # where the gateway serves SchedulesApp
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int:
    """The period of a `rate()` expression, in seconds (EventBridge's grammar: 1 takes the singular unit)."""
    found = _RATE.match(expression.strip())
    if not found:
        raise NotImplementedError(
            f"schedule expression {expression!r} is not implemented locally (rate() is)"
        )
    value, unit = int(found.group(1)), found.group(2)
    if value < 1 or (value == 1) != (not unit.endswith("s")):
        raise ValueError(f"invalid schedule expression {expression!r}")
    return value * _UNITS[unit.rstrip("s")]


@dataclass(frozen=True)
class ScheduleRule:
    name: str  # the rule's logical id as SAM names it: <function><event>
    function: str  # logical id of the target function
    expression: str
    enabled: bool = True

    @property
    def seconds(self) -> int:
        return rate_seconds(self.expression)


def schedule_rules(template: dict[str, Any] | None = None) -> list[ScheduleRule]:
    template = template or tpl.load_template()
    rules = []
    for logical_id, body in tpl.resources(template, "AWS::Serverless::Function").items():
        for event_name, event in body["Properties"].get("Events", {}).items():
            if event.get("Type") != "Schedule":
                continue
            props = event["Properties"]
            enabled = props.get("Enabled", True) and props.get("State", "ENABLED") == "ENABLED"
            rules.append(ScheduleRule(f"{logical_id}{event_name}", logical_id, props["Schedule"], enabled))
    return rules


def scheduled_event(rule: ScheduleRule, *, region: str, account: str, stage: str) -> dict[str, Any]:
    """The event EventBridge sends a scheduled rule's target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{stage}-{rule.name}"],
        "detail": {},
    }


@dataclass
class RuleRun:
    """What the last run of a rule did (the local page and the tests read it)."""

    at: str
    ok: bool
    result: Any = None
    error: str | None = None


@dataclass
class Scheduler:
    rules: list[ScheduleRule]
    runners: dict[str, FunctionRunner]
    region: str
    account: str
    stage: str
    period: float | None = None  # seconds: overrides every rule's rate (local only)
    runs: dict[str, list[RuleRun]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _next: dict[str, float] = field(default_factory=dict)  # rule -> monotonic time of its next run

    def __post_init__(self) -> None:
        for rule in self.rules:
            rule.seconds  # noqa: B018 - a cron() or bad rate fails here, at the start, naming the rule
            if rule.function not in self.runners:
                raise KeyError(f"schedule {rule.name}: no function {rule.function}")

    def every(self, rule: ScheduleRule) -> float:
        return self.period if self.period is not None else float(rule.seconds)

    def start(self) -> Scheduler:
        for rule in self.rules:
            if not rule.enabled:
                continue
            thread = threading.Thread(
                target=self._loop, args=(rule,), name=f"schedule-{rule.name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _loop(self, rule: ScheduleRule) -> None:
        while True:
            self._next[rule.name] = time.monotonic() + self.every(rule)
            if self._stop.wait(self.every(rule)):
                return
            self._invoke(rule)

    def find(self, name: str) -> ScheduleRule:
        """A rule by its name, or by its target function's logical id when that has one rule."""
        found = [r for r in self.rules if name in (r.name, r.function)]
        if len(found) != 1:
            raise KeyError(name)
        return found[0]

    def run_now(self, name: str) -> RuleRun:
        """Invoke the rule's target now (synchronously) with a scheduled event; what it did."""
        return self._invoke(self.find(name))

    def _invoke(self, rule: ScheduleRule) -> RuleRun:
        event = scheduled_event(rule, region=self.region, account=self.account, stage=self.stage)
        try:
            result = self.runners[rule.function].invoke(event)
            run = RuleRun(at=event["time"], ok=True, result=result)
        except Exception as error:  # EventBridge's target had an error: the next period runs it again
            print(f"[schedules] {rule.name}: {rule.function} failed: {type(error).__name__}", flush=True)
            run = RuleRun(at=event["time"], ok=False, error=type(error).__name__)
        self.runs.setdefault(rule.name, []).append(run)
        return run

    def describe(self) -> list[dict[str, Any]]:
        """Each rule: its expression, the local period, its target, the last run and the next one."""
        listed = []
        for rule in self.rules:
            runs = self.runs.get(rule.name, [])
            due = self._next.get(rule.name)
            listed.append(
                {
                    "name": rule.name,
                    "function": rule.function,
                    "expression": rule.expression,
                    "enabled": rule.enabled,
                    "everySeconds": self.every(rule),
                    "runs": len(runs),
                    "lastRun": vars(runs[-1]) if runs else None,
                    "nextRunInSeconds": None if due is None else max(0, round(due - time.monotonic())),
                }
            )
        return listed


class SchedulesApp:
    """`/_local/schedules` on the gateway: GET lists the rules (JSON); `POST /<name>/run` runs one now and
    answers what its target returned. Loopback only, POSTs from this origin only (as the simulator controls)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        from werkzeug.wrappers import Request

        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Any) -> Any:
        from devstack.controls import _json, _refuse_foreign

        refusal = _refuse_foreign(request)
        if refusal is not None:
            return refusal
        path = request.path.strip("/")
        if request.method == "GET" and path in ("", ".json"):
            return _json(self.scheduler.describe())
        name, _, action = path.partition("/")
        if request.method != "POST" or action != "run":
            return _json({"error": "not found"}, 404)
        try:
            run = self.scheduler.run_now(name)
        except KeyError:
            return _json({"error": f"no schedule {name}"}, 404)
        return _json(vars(run), 200 if run.ok else 502)
