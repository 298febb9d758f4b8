"""An `Enforcer` for a deployment of template.yaml: its resources' names (`refs`, as `devstack.template`
resolves them) give the policies' ARNs, the tables' key schemas and the roles' names."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from devstack import template as tpl
from devstack.iam.enforce import ACCOUNT, Enforcer
from devstack.iam.policy import Statement, role_policies

REGION = "us-east-1"


def iam_refs(refs: Mapping[str, str], template: dict[str, Any] | None = None) -> dict[str, str]:
    """`refs` plus the attributes the policies use: tables' ARNs, state machines' names, functions' ARNs."""
    template = template or tpl.load_template()
    found = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, **refs}
    for logical_id in tpl.resources(template, "AWS::DynamoDB::Table"):
        if logical_id in refs:
            found.setdefault(
                f"{logical_id}.Arn", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{refs[logical_id]}"
            )
    for logical_id in tpl.resources(template, "AWS::Serverless::StateMachine"):
        if logical_id in refs:
            found.setdefault(f"{logical_id}.Name", refs[logical_id].rsplit(":", 1)[-1])
    for logical_id in tpl.resources(template, "AWS::Serverless::Function"):
        if logical_id in refs:
            found.setdefault(f"{logical_id}.Arn", tpl.function_arn(refs[logical_id]))
    for logical_id in tpl.resources(template, "AWS::Events::EventBus"):
        if logical_id in refs:
            found.setdefault(f"{logical_id}.Arn", tpl.event_bus_arn(refs[logical_id]))
    return found


def key_schemas(
    refs: Callable[[], Mapping[str, str]], template: dict[str, Any] | None = None
) -> Callable[[str, str | None], str | None]:
    """The partition key attribute of a table (by its name or ARN) or of one of its indexes."""
    template = template or tpl.load_template()
    tables = tpl.resources(template, "AWS::DynamoDB::Table")

    def hash_key(schema: list[dict[str, str]]) -> str | None:
        return next((k["AttributeName"] for k in schema if k["KeyType"] == "HASH"), None)

    def lookup(table: str, index: str | None) -> str | None:
        name = table.rsplit(":table/", 1)[-1]
        current = refs()
        for logical_id, body in tables.items():
            if current.get(logical_id) != name:
                continue
            props = body["Properties"]
            if index is None:
                return hash_key(props["KeySchema"])
            for gsi in props.get("GlobalSecondaryIndexes", []):
                if gsi["IndexName"] == index:
                    return hash_key(gsi["KeySchema"])
        return None

    return lookup


def enforcer(refs: Callable[[], Mapping[str, str]], stack_name: str) -> Enforcer:
    """Each function and state machine of template.yaml held to its own policy, resolved with `refs()`
    (read at every call: resources may change, as in the tests)."""
    template = tpl.load_template()

    @functools.lru_cache(maxsize=8)
    def resolved(frozen: frozenset[tuple[str, str]]) -> dict[str, list[Statement]]:
        return role_policies(iam_refs(dict(frozen), template))

    def policies() -> Mapping[str, list[Statement]]:
        return resolved(frozenset(refs().items()))

    def state_machines() -> dict[str, str]:
        current = refs()
        return {
            current[logical_id]: logical_id
            for logical_id in tpl.resources(template, "AWS::Serverless::StateMachine")
            if logical_id in current
        }

    handler_modules = {
        tpl.function_module(body)[0]: logical_id
        for logical_id, body in tpl.resources(template, "AWS::Serverless::Function").items()
    }
    return Enforcer(
        policies=policies,
        handler_modules=handler_modules,
        state_machines=state_machines,
        key_schema=key_schemas(refs, template),
        role_name=lambda logical_id: f"{stack_name}-{logical_id}Role",
    )
