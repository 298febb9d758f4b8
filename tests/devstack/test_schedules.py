"""devstack/schedules.py: the template's scheduled rules invoke their functions, once a period, with the
event EventBridge sends; a run can be asked for at once (the tests' and a curious developer's trigger)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from werkzeug.test import Client

from devstack import schedules

RULE = schedules.ScheduleRule("CheckerEveryFiveMinutes", "Checker", "rate(5 minutes)")


class FakeFunction:
    def __init__(self, fail: bool = False) -> None:
        self.name = "t-Checker"
        self.events: list[dict[str, Any]] = []
        self.fail = fail

    def invoke(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        if self.fail:
            raise RuntimeError("boom")
        return {"sent": 1}


def _scheduler(function: FakeFunction, period: float | None = None) -> schedules.Scheduler:
    return schedules.Scheduler([RULE], {"Checker": function}, "us-east-1", "123456789012", "t", period=period)  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(5 minutes)", 300), ("rate(1 minute)", 60), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert schedules.rate_seconds(expression) == seconds


def test_what_is_not_implemented_or_invalid_fails_loudly() -> None:
    with pytest.raises(NotImplementedError):
        schedules.rate_seconds("cron(0 12 * * ? *)")
    with pytest.raises(ValueError, match="invalid"):
        schedules.rate_seconds("rate(1 minutes)")  # EventBridge wants the singular for 1


def test_the_dispatcher_is_the_templates_one_scheduled_rule() -> None:
    (rule,) = schedules.schedule_rules()
    assert (rule.name, rule.function, rule.seconds, rule.enabled) == (
        "DispatchChecksFunctionEveryFiveMinutes",
        "DispatchChecksFunction",
        300,
        True,
    )


def test_a_run_now_invokes_the_target_with_a_scheduled_event() -> None:
    function = FakeFunction()
    run = _scheduler(function).run_now("Checker")  # by its function's name, or the rule's
    assert (run.ok, run.result) == (True, {"sent": 1})
    (event,) = function.events
    assert (event["source"], event["detail-type"], event["detail"]) == ("aws.events", "Scheduled Event", {})
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/t-CheckerEveryFiveMinutes"]


def test_a_failed_run_is_recorded_and_the_schedule_goes_on() -> None:
    scheduler = _scheduler(FakeFunction(fail=True))
    run = scheduler.run_now("CheckerEveryFiveMinutes")
    assert (run.ok, run.error) == (False, "RuntimeError")
    assert scheduler.describe()[0]["runs"] == 1


def test_the_rule_fires_once_a_period_not_at_once() -> None:
    # Given a scheduler whose period (the local override) is short
    function = FakeFunction()
    scheduler = _scheduler(function, period=0.05).start()
    try:
        # Then it fires again and again on its own
        deadline = time.monotonic() + 30
        while len(function.events) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        scheduler.stop()
    assert len(function.events) >= 3
    assert scheduler.describe()[0]["everySeconds"] == 0.05


def test_a_stopped_scheduler_that_never_reached_its_period_never_ran() -> None:
    function = FakeFunction()
    _scheduler(function).start().stop()  # five minutes away
    assert function.events == []


def test_the_http_trigger_runs_a_rule_and_refuses_other_origins() -> None:
    function = FakeFunction()
    client = Client(schedules.SchedulesApp(_scheduler(function)))
    base = {"base_url": "http://127.0.0.1:3000/_local/schedules"}
    assert client.get("/", **base).json[0]["name"] == "CheckerEveryFiveMinutes"
    ran = client.post("/Checker/run", headers={"Origin": "http://127.0.0.1:3000"}, **base)
    assert (ran.status_code, ran.json["result"]) == (200, {"sent": 1})
    foreign = client.post("/Checker/run", headers={"Origin": "https://evil.example"}, **base)
    assert foreign.status_code == 403
    assert client.post("/Nothing/run", **base).status_code == 404
    assert len(function.events) == 1
