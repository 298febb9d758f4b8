"""The README's status-events section: its webhook stack (a rule on our bus with an API destination) is a
valid CloudFormation template that routes exactly our events, with retries and a dead-letter queue."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from devstack import template as tpl
from onboarding.agents import events

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _snippet() -> str:
    found = re.search(r"<!-- snippet: dashboard-webhook -->\n```yaml\n(.*?)\n```", README, flags=re.DOTALL)
    assert found, "the README's dashboard-webhook snippet"
    return found.group(1) + "\n"


def _loaded() -> dict[str, Any]:
    return yaml.load(_snippet(), Loader=tpl._CfnLoader)  # noqa: S506  (SafeLoader subclass)


def test_the_webhook_stack_passes_cfn_lint() -> None:
    from cfnlint.api import lint

    problems = lint(_snippet(), regions=["us-east-1"])
    assert [str(problem) for problem in problems] == []


def test_the_rule_routes_our_events_to_the_api_destination_with_retries_and_a_dlq() -> None:
    resources = _loaded()["Resources"]
    (rule,) = [body["Properties"] for body in resources.values() if body["Type"] == "AWS::Events::Rule"]
    assert rule["EventBusName"] == {"Ref": "EventBusArn"}
    assert rule["EventPattern"] == {"source": [events.SOURCE], "detail-type": [events.DETAIL_TYPE]}
    (target,) = rule["Targets"]
    assert resources[target["Arn"]["Fn::GetAtt"][0]]["Type"] == "AWS::Events::ApiDestination"
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 86400
    assert resources[target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]]["Type"] == "AWS::SQS::Queue"


def test_the_stack_outputs_what_the_snippet_takes() -> None:
    outputs = tpl.load_template()["Outputs"]
    assert outputs["EventBusArn"]["Value"] == {"Fn::GetAtt": ["AgentEventsBus", "Arn"]}
    assert "EventBusArn" in _loaded()["Parameters"]
