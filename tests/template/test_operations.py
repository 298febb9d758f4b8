"""What operators get from template.yaml: every alarm on the right metric, each naming its runbook section;
every log group with the stage's retention; parameters bounded as the code's settings are."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from devstack import template as tpl
from onboarding import settings
from tests.conftest import template_environment

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = tpl.load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
ALARMS = tpl.resources(TEMPLATE, "AWS::CloudWatch::Alarm")
FUNCTIONS = tpl.resources(TEMPLATE, "AWS::Serverless::Function")
RUNBOOK = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")


def _alarms_on(namespace: str, metric: str) -> list[dict[str, Any]]:
    def ns(props: dict[str, Any]) -> str:
        value = props["Namespace"]
        return value if isinstance(value, str) else value["Fn::Sub"]

    return [
        body["Properties"]
        for body in ALARMS.values()
        if ns(body["Properties"]) == namespace and body["Properties"]["MetricName"] == metric
    ]


def _dimensions(props: dict[str, Any]) -> dict[str, Any]:
    return {dim["Name"]: dim["Value"] for dim in props["Dimensions"]}


@pytest.mark.parametrize("metric", ["5xx", "Latency", "IntegrationLatency"])
def test_the_http_api_is_watched_on_its_own_metrics(metric: str) -> None:
    (alarm,) = _alarms_on("AWS/ApiGateway", metric)
    assert _dimensions(alarm) == {"ApiId": {"Ref": "HttpApi"}, "Stage": {"Ref": "Stage"}}


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_each_function_has_error_and_throttle_alarms(function: str, metric: str) -> None:
    watched = [_dimensions(a) for a in _alarms_on("AWS/Lambda", metric)]
    assert {"FunctionName": {"Ref": function}} in watched


@pytest.mark.parametrize("function", FUNCTIONS)
def test_errors_each_function_logs_are_counted_and_alarmed(function: str) -> None:
    """Handled exceptions never reach Lambda's Errors metric (the API answers 500): each function's log
    group counts its ERROR lines, and an alarm watches the count."""
    group = FUNCTIONS[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    (metric,) = [
        transform
        for body in tpl.resources(TEMPLATE, "AWS::Logs::MetricFilter").values()
        if body["Properties"]["LogGroupName"] == {"Ref": group}
        and '$.level = "ERROR"' in body["Properties"]["FilterPattern"]
        for transform in body["Properties"]["MetricTransformations"]
    ]
    assert metric["MetricNamespace"] == {"Fn::Sub": "MailboxOnboarding-${Stage}"}
    assert _alarms_on("MailboxOnboarding-${Stage}", metric["MetricName"])


def test_kms_failures_are_counted_where_secrets_are_sealed_and_unsealed() -> None:
    groups = {
        body["Properties"]["LogGroupName"]["Ref"]
        for body in tpl.resources(TEMPLATE, "AWS::Logs::MetricFilter").values()
        if body["Properties"]["MetricTransformations"][0]["MetricName"] == "KmsErrors"
    }
    assert groups == {"AuthCallbackLogs", "VerifyMailboxLogs", "CheckMailboxLogs"}
    assert _alarms_on("MailboxOnboarding-${Stage}", "KmsErrors")


def _dashboard() -> dict[str, Any]:
    """OperationsDashboard's body, its ${...} references left as text."""
    (body,) = tpl.resources(TEMPLATE, "AWS::CloudWatch::Dashboard").values()
    parsed: dict[str, Any] = json.loads(body["Properties"]["DashboardBody"]["Fn::Sub"])
    return parsed


def _widget(title: str) -> dict[str, Any]:
    (found,) = [w["properties"] for w in _dashboard()["widgets"] if w["properties"]["title"] == title]
    return found


def _charted(title: str) -> list[tuple[str, ...]]:
    """(namespace, metric, dimension values...) of each metric a widget charts."""
    return [
        tuple(str(part) for part in row if not isinstance(part, dict)) for row in _widget(title)["metrics"]
    ]


def _emitted(*paths: str) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for source in sorted((ROOT / "layers" / "common" / "onboarding").glob(path)):
            names |= set(re.findall(r'add_metric\(name="(\w+)"', source.read_text(encoding="utf-8")))
    return names


def test_every_metric_the_health_checks_emit_is_charted_by_outcome() -> None:
    emitted = _emitted("health/*.py")
    charted = {row[1] for row in _charted("Health checks by outcome")}
    assert {"MailboxChecked", "MailboxRefused", "MailboxLocked", "ChecksDispatched"} <= emitted
    assert emitted <= charted


def test_the_status_events_published_and_failed_are_charted() -> None:
    emitted = _emitted("agents/events.py")
    charted = {row[1] for row in _charted("Status events")}
    assert emitted == {"StatusEventPublished", "StatusEventFailed"}
    assert emitted <= charted
    assert ("AWS/Lambda", "IteratorAge", "FunctionName", "${PublishStatusFunction}") in _charted(
        "Status events"
    )


def test_the_checks_queue_depth_and_age_and_every_dead_letter_queue_are_charted() -> None:
    queue = _charted("Checks queue")
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "${ChecksQueue.QueueName}") in queue
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "${ChecksQueue.QueueName}") in queue
    dead = {row[3] for row in _charted("Dead-letter queues")}
    queues = tpl.resources(TEMPLATE, "AWS::SQS::Queue")
    assert dead == {f"${{{name}.QueueName}}" for name in queues if "DeadLetter" in name}


def test_failed_checks_are_tabled_from_the_checkers_own_log_line() -> None:
    query = _widget("Failed checks by problem")["query"]
    assert query.startswith("SOURCE '${CheckMailboxLogs}'")
    source = (ROOT / "layers" / "common" / "onboarding" / "health" / "check.py").read_text(encoding="utf-8")
    assert re.search(r'"Mailbox checked",\s*extra=\{[^}]*"verdict"[^}]*"problem"', source)


@pytest.mark.parametrize("metric", ["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"])
def test_dead_workflows_are_alarmed(metric: str) -> None:
    (alarm,) = _alarms_on("AWS/States", metric)
    assert _dimensions(alarm) == {"StateMachineArn": {"Ref": "VerifyMailboxStateMachine"}}


@pytest.mark.parametrize("queue", tpl.resources(TEMPLATE, "AWS::SQS::Queue"))
def test_every_queue_has_a_depth_alarm(queue: str) -> None:
    watched = [_dimensions(a) for a in _alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible")]
    assert {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}} in watched


@pytest.mark.parametrize("metric", ["Reputation.BounceRate", "Reputation.ComplaintRate"])
def test_ses_reputation_is_alarmed(metric: str) -> None:
    (alarm,) = _alarms_on("AWS/SES", metric)
    assert alarm["Dimensions"] == []
    assert 0 < alarm["Threshold"] <= 0.05


@pytest.mark.parametrize("table", tpl.resources(TEMPLATE, "AWS::DynamoDB::Table"))
@pytest.mark.parametrize("metric", ["ReadThrottleEvents", "WriteThrottleEvents"])
def test_table_throttles_are_alarmed(table: str, metric: str) -> None:
    assert {"TableName": {"Ref": table}} in [_dimensions(a) for a in _alarms_on("AWS/DynamoDB", metric)]


def _anchors(markdown: str) -> set[str]:
    headings = re.findall(r"^#{2,4} (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-") for h in headings}


@pytest.mark.parametrize("alarm", ALARMS)
def test_each_alarm_notifies_and_names_its_runbook_section(alarm: str) -> None:
    props = ALARMS[alarm]["Properties"]
    assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert props["TreatMissingData"] == "notBreaching"
    found = re.search(r"Runbook: docs/runbook\.md#([a-z0-9-]+)", props["AlarmDescription"])
    assert found, props["AlarmDescription"]
    assert found.group(1) in _anchors(RUNBOOK)


def test_every_alarm_is_in_the_output_the_smoke_test_reads() -> None:
    joined = TEMPLATE["Outputs"]["AlarmNames"]["Value"]["Fn::Join"][1]
    assert sorted(ref["Ref"] for ref in joined) == sorted(ALARMS)


def test_every_log_group_expires_and_every_function_logs_to_one() -> None:
    groups = tpl.resources(TEMPLATE, "AWS::Logs::LogGroup")
    assert all(
        body["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for body in groups.values()
    )
    used = [body["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for body in FUNCTIONS.values()]
    assert sorted(used) == sorted(set(used))
    assert set(used) <= set(groups)


def test_tables_are_protected_from_deletion_in_prod() -> None:
    assert TEMPLATE["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    for body in tpl.resources(TEMPLATE, "AWS::DynamoDB::Table").values():
        assert body["Properties"]["DeletionProtectionEnabled"] == {"Fn::If": ["IsProd", True, False]}
        assert body["DeletionPolicy"] == "Retain"


# -- parameters checked at deploy, as the code checks them at cold start --------------------------------
def cloudformation_accepts(name: str, value: str) -> bool:
    """CloudFormation's own checks of a parameter value (AllowedPattern is matched whole, as it does)."""
    spec = TEMPLATE["Parameters"][name]
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        return False
    if spec["Type"] == "Number":
        try:
            number = float(value)
        except ValueError:
            return False
        return float(spec.get("MinValue", "-inf")) <= number <= float(spec.get("MaxValue", "inf"))
    return "AllowedPattern" not in spec or re.fullmatch(spec["AllowedPattern"], value) is not None


# Parameter -> (function whose settings read it, variable): the code's model is the source of truth.
READ_BY = {
    "ExchangeDiscoveryTimeout": ("VerifyMailboxFunction", "EXCHANGE_DISCOVERY_TIMEOUT"),
    "ExchangeVerifyTimeout": ("VerifyMailboxFunction", "EXCHANGE_VERIFY_TIMEOUT"),
    "SettingsTimeoutSeconds": ("AuthCallbackFunction", "SETTINGS_TIMEOUT_SECONDS"),
    "MicrosoftSignInTtlSeconds": ("AuthCallbackFunction", "M365_FLOW_TTL_SECONDS"),
    "InviteValidDays": ("SendInviteFunction", "INVITE_VALID_DAYS"),
    "InviteSender": ("SendInviteFunction", "INVITE_SENDER"),
    "InviteSenderName": ("SendInviteFunction", "INVITE_SENDER_NAME"),
    "PublicBaseUrl": ("SendInviteFunction", "PUBLIC_BASE_URL"),
    "DashboardUrl": ("AuthCallbackFunction", "DASHBOARD_URL"),
    "EntraClientSecretArn": ("VerifyMailboxFunction", "M365_CLIENT_SECRET_ARN"),
    "ReconnectEmailIntervalHours": ("AddAgentFunction", "RECONNECT_EMAIL_INTERVAL_HOURS"),
}
MODELS = {
    "AddAgentFunction": settings.AgentsApiSettings,
    "VerifyMailboxFunction": settings.VerifyMailboxSettings,
    "AuthCallbackFunction": settings.AuthCallbackSettings,
    "SendInviteFunction": settings.SendInviteSettings,
}
NUMBERS = [
    "0",
    "0.5",
    "1",
    "2",
    "49",
    "50",
    "51",
    "59",
    "60",
    "61",
    "3600",
    "3601",
    "86400",
    "31536000",
    "31536001",
    "-1",
    "7",
    "30",
    "31",
]
TEXTS = [
    "",
    "invites@example.com",
    "Team <invites@example.com>",
    "Mailbox Onboarding",
    'Bad "quoted" <name>',
    "x" * 65,
    "https://connect.example.com",
    "http://connect.example.com/path",
    "connect.example.com",
    "https://has space.example.com",
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:entra-app-AbCdEf",
    "arn:aws:kms:eu-west-1:123456789012:key/x",
    "secret-name",
]


def code_accepts(parameter: str, value: str) -> bool:
    function, variable = READ_BY[parameter]
    environment = {**template_environment(function), variable: value}
    if variable == "M365_CLIENT_SECRET_ARN":
        environment["M365_CLIENT_ID"] = "11111111-2222-3333-4444-555555555555" if value else ""
    if variable == "PUBLIC_BASE_URL":
        environment["API_BASE_URL"] = ""  # the invite links' only base then
    try:
        MODELS[function].from_environ(environment)
    except settings.ConfigurationError:
        return False
    return True


@pytest.mark.parametrize("parameter", READ_BY)
def test_a_parameter_is_accepted_at_deploy_exactly_when_the_code_accepts_it(parameter: str) -> None:
    """Given values on and around every bound, CloudFormation refuses what the function's settings would
    refuse at cold start (each workflow would then fail), and accepts what they accept."""
    values = NUMBERS if TEMPLATE["Parameters"][parameter]["Type"] == "Number" else TEXTS
    if parameter == "PublicBaseUrl":
        values = [v for v in values if v]  # empty: the API's own URL (the invite sender's model needs one)
    disagreements = {v: (cloudformation_accepts(parameter, v), code_accepts(parameter, v)) for v in values}
    assert {v: both for v, both in disagreements.items() if both[0] != both[1]} == {}
    assert any(a for a, _ in disagreements.values())
    assert not all(a for a, _ in disagreements.values())


def test_the_exchange_budgets_out_of_range_are_refused_at_deploy() -> None:
    assert not cloudformation_accepts("ExchangeVerifyTimeout", "90")
    with pytest.raises(ValidationError):
        settings.VerifyMailboxSettings.model_validate(
            {
                k.lower(): v
                for k, v in {
                    **template_environment("VerifyMailboxFunction"),
                    "EXCHANGE_VERIFY_TIMEOUT": "90",
                }.items()
            }
        )


def test_an_entra_client_id_needs_its_secret_and_the_other_way_round() -> None:
    rules = TEMPLATE["Rules"]
    needs_secret = rules["EntraAppNeedsItsSecret"]
    assert needs_secret["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "EntraClientId"}, ""]}]}
    assert needs_secret["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "EntraClientSecretArn"}, ""]}]
    }
    needs_app = rules["EntraSecretNeedsItsApp"]
    assert needs_app["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "EntraClientId"}, ""]}]
    }


def test_names_in_the_account_are_derived_from_the_stack() -> None:
    """Two stages (two stacks) in one account: the SES configuration set, alarms and dashboard differ."""
    named = {
        logical_id: body["Properties"].get("Name")
        or body["Properties"].get("AlarmName")
        or body["Properties"].get("DashboardName")
        for logical_id, body in RESOURCES.items()
        if body["Type"]
        in {"AWS::SES::ConfigurationSet", "AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard"}
    }
    assert named
    assert all(value["Fn::Sub"].startswith("${AWS::StackName}-") for value in named.values())


def test_the_connect_page_reserves_no_concurrency_unless_asked() -> None:
    assert TEMPLATE["Parameters"]["ConnectPageConcurrency"]["Default"] == 0
    reserved = FUNCTIONS["AuthCallbackFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert reserved == {
        "Fn::If": ["ReservesConnectConcurrency", {"Ref": "ConnectPageConcurrency"}, {"Ref": "AWS::NoValue"}]
    }


def test_every_function_is_shifted_gradually_and_rolled_back_on_its_own_alarms() -> None:
    assert TEMPLATE["Globals"]["Function"]["AutoPublishAlias"] == "live"
    # The verification function is shifted with the workflow: each state machine version names the function
    # version published with it, and the state machine's alias moves gradually (below).
    substitutions = RESOURCES["VerifyMailboxStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert substitutions["VerifyMailboxFunctionArn"] == {"Ref": "VerifyMailboxFunction.Version"}
    assert "DeploymentPreference" not in FUNCTIONS["VerifyMailboxFunction"]["Properties"]
    for name, body in FUNCTIONS.items():
        if name == "VerifyMailboxFunction":
            continue
        preference = body["Properties"]["DeploymentPreference"]
        assert preference["Type"] == {"Ref": "DeploymentType"}, name
        alarms = [alarm["Ref"] for alarm in preference["Alarms"]]
        assert f"{name.removesuffix('Function')}ErrorsAlarm" in alarms, name
        assert all(alarm in ALARMS for alarm in alarms), name


def test_the_workflow_is_versioned_behind_an_alias_shifted_like_the_functions() -> None:
    machine = RESOURCES["VerifyMailboxStateMachine"]["Properties"]
    assert machine["AutoPublishAlias"] == "live"
    preference = machine["DeploymentPreference"]
    shifts = TEMPLATE["Mappings"]["StateMachineShift"]
    # every DeploymentType has its Step Functions equivalent, of the type the alias's name says
    for deployment_type in TEMPLATE["Parameters"]["DeploymentType"]["AllowedValues"]:
        shift = shifts[deployment_type]
        expected = "ALL_AT_ONCE" if deployment_type == "AllAtOnce" else deployment_type[:6].upper()
        assert shift["Type"] == expected, deployment_type
        assert 0 < shift["Percentage"] <= 100, deployment_type
    assert preference["Type"] == {"Fn::FindInMap": ["StateMachineShift", {"Ref": "DeploymentType"}, "Type"]}
    alarms = {alarm["Ref"] for alarm in preference["Alarms"]}
    assert {"WorkflowsFailedAlarm", "WorkflowsTimedOutAlarm", "VerifyMailboxErrorsAlarm"} <= alarms
    assert alarms <= set(ALARMS)
    # new attempts start the alias (SAM's generated `<StateMachine>Alias<name>`), never the latest definition
    env = FUNCTIONS["AuthCallbackFunction"]["Properties"]["Environment"]["Variables"]
    assert env["STATE_MACHINE_ARN"] == {"Ref": "VerifyMailboxStateMachineAliaslive"}
    assert template_environment("AuthCallbackFunction")["STATE_MACHINE_ARN"].endswith(":verify-mailbox:live")
