"""Read template.yaml, the single source of truth for resources and routes, for the local stack and tests.

Only what the local stack needs is interpreted: DynamoDB tables, functions with their environment and
HttpApi events, and the intrinsic functions used in those places (Ref, Sub, GetAtt on known names).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns `!Ref X` / `!Sub ...` / `!GetAtt A.B` into their long JSON forms."""


def _intrinsic(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@functools.cache
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        document: dict[str, Any] = yaml.load(stream, Loader=_CfnLoader)  # noqa: S506  (SafeLoader subclass)
    return document


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: body
        for name, body in template.get("Resources", {}).items()
        if body.get("Type") == resource_type
    }


def create_table_kwargs(
    logical_id: str, table_name: str, template: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`CreateTable` arguments for a table exactly as template.yaml declares it."""
    props = (template or load_template())["Resources"][logical_id]["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if "GlobalSecondaryIndexes" in props:
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if "StreamSpecification" in props:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    return kwargs


def create_tables(ddb: Any, names: dict[str, str], template: dict[str, Any] | None = None) -> None:
    """Create every AWS::DynamoDB::Table of the template under the given physical names."""
    template = template or load_template()
    for logical_id in resources(template, "AWS::DynamoDB::Table"):
        ddb.create_table(**create_table_kwargs(logical_id, names[logical_id], template))
        ttl = template["Resources"][logical_id]["Properties"].get("TimeToLiveSpecification")
        if ttl:
            ddb.update_time_to_live(TableName=names[logical_id], TimeToLiveSpecification=ttl)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as in the template: /agents/{agentId}
    function: str  # logical id
    module: str  # functions.add_agent.app
    handler: str  # lambda_handler
    authorized: bool
    pattern: re.Pattern[str] = field(compare=False, hash=False)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in (method, "ANY"):
            return None
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found else None


def _path_pattern(path: str) -> re.Pattern[str]:
    regex = ""
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("+}"):
            regex += f"(?P<{part[1:-2]}>.+)"
        elif part.startswith("{"):
            regex += f"(?P<{part[1:-1]}>[^/]+)"
        else:
            regex += re.escape(part)
    return re.compile(regex)


def function_module(function_body: dict[str, Any]) -> tuple[str, str]:
    """`CodeUri: functions/add_agent/`, `Handler: app.lambda_handler` -> (module path, handler name)."""
    code_uri = str(function_body["Properties"]["CodeUri"]).strip("/")
    module, handler = str(function_body["Properties"]["Handler"]).rsplit(".", 1)
    return f"{code_uri.replace('/', '.')}.{module}", handler


def http_routes(template: dict[str, Any] | None = None) -> list[Route]:
    template = template or load_template()
    routes = []
    for logical_id, body in resources(template, "AWS::Serverless::Function").items():
        module, handler = function_module(body)
        for event in body["Properties"].get("Events", {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event["Properties"]
            auth = props.get("Auth", {}).get("Authorizer")
            routes.append(
                Route(
                    method=str(props["Method"]).upper(),
                    path=props["Path"],
                    function=logical_id,
                    module=module,
                    handler=handler,
                    authorized=auth != "NONE",
                    pattern=_path_pattern(props["Path"]),
                )
            )
    # Literal segments win over parameters, as in API Gateway: sort the most specific first.
    return sorted(routes, key=lambda r: (r.path.count("{"), -len(r.path)))


def resolve(value: Any, refs: dict[str, str]) -> Any:
    """Resolve Ref / Sub / GetAtt against `refs` (parameters, pseudo parameters and resource names)."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            if arg not in refs and arg.endswith((".Version", ".Alias")):
                # SAM's `!Ref Function.Version` / `.Alias` (AutoPublishAlias): locally nothing is published;
                # the function's own ARN with a qualifier, which the local Lambda seam accepts and ignores.
                base, kind = arg.rsplit(".", 1)
                return f"{refs[base + '.Arn']}:{'1' if kind == 'Version' else 'live'}"
            return refs[arg]
        if key == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            extra = {} if isinstance(arg, str) else {k: resolve(v, refs) for k, v in arg[1].items()}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: {**refs, **extra}[m.group(1)], text)
        if key == "Fn::GetAtt":
            return refs[".".join(arg)]
        if key == "Fn::Join":
            return str(arg[0]).join(str(resolve(part, refs)) for part in arg[1])
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    return value


def function_environment(
    logical_id: str, refs: dict[str, str], template: dict[str, Any] | None = None
) -> dict[str, str]:
    """The environment the function gets on AWS: Globals merged with its own variables."""
    template = template or load_template()
    global_vars = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own = template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return {name: str(resolve(value, refs)) for name, value in {**global_vars, **own}.items()}


def parameter_defaults(template: dict[str, Any] | None = None) -> dict[str, str]:
    template = template or load_template()
    return {
        name: str(body["Default"])
        for name, body in template.get("Parameters", {}).items()
        if "Default" in body
    }


def state_machine_definition(
    logical_id: str, refs: dict[str, str], template: dict[str, Any] | None = None
) -> str:
    """The ASL file named by `DefinitionUri`, with its `DefinitionSubstitutions` applied, as deployed."""
    template = template or load_template()
    props = template["Resources"][logical_id]["Properties"]
    text = (ROOT / props["DefinitionUri"]).read_text(encoding="utf-8")
    for name, value in props.get("DefinitionSubstitutions", {}).items():
        text = text.replace("${" + name + "}", str(resolve(value, refs)))
    return text


def create_state_machine(
    sfn: Any,
    logical_id: str,
    refs: dict[str, str],
    *,
    name: str,
    role_arn: str = "arn:aws:iam::123456789012:role/state-machine",
) -> str:
    """Create the template's state machine `logical_id` (its ASL file, as deployed) and, like SAM's
    `AutoPublishAlias`, publish it as version 1 behind its alias (devstack.sfn_aliases); returns its ARN."""
    from devstack import sfn_aliases

    alias = sfn_aliases.auto_publish_alias(load_template(), logical_id)
    created = sfn.create_state_machine(
        name=name,
        definition=state_machine_definition(logical_id, refs),
        roleArn=role_arn,
        type="STANDARD",
        publish=alias is not None,
    )
    arn = str(created["stateMachineArn"])
    if alias is not None:
        sfn_aliases.point_alias(sfn, arn, alias, created["stateMachineVersionArn"])
    return arn


def state_machine_refs(logical_id: str, arn: str, template: dict[str, Any] | None = None) -> dict[str, str]:
    """What the template's references to a state machine resolve to: its ARN, and the alias SAM generates
    for `AutoPublishAlias` (`<StateMachine>Alias<name>`, whose Ref is the alias ARN)."""
    from devstack import sfn_aliases

    refs = {logical_id: arn}
    alias = sfn_aliases.auto_publish_alias(template or load_template(), logical_id)
    if alias:
        refs[f"{logical_id}Alias{alias}"] = f"{arn}:{alias}"
    return refs


def function_arn(name: str, region: str = "us-east-1", account: str = "123456789012") -> str:
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


def event_bus_arn(name: str, region: str = "us-east-1", account: str = "123456789012") -> str:
    return f"arn:aws:events:{region}:{account}:event-bus/{name}"


def state_machine_arn(name: str, region: str = "us-east-1", account: str = "123456789012") -> str:
    return f"arn:aws:states:{region}:{account}:stateMachine:{name}"


def alarm_kwargs(
    logical_id: str, refs: dict[str, str], template: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`PutMetricAlarm` arguments for an AWS::CloudWatch::Alarm exactly as template.yaml declares it."""
    props = (template or load_template())["Resources"][logical_id]["Properties"]
    kwargs = {name: resolve(value, refs) for name, value in props.items()}
    kwargs["Dimensions"] = [
        {"Name": dim["Name"], "Value": str(resolve(dim["Value"], refs))}
        for dim in props.get("Dimensions", [])
    ]
    return kwargs
