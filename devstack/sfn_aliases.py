"""Starting Step Functions executions through an alias or a version, as AWS does, on moto 5.2.5.

moto keeps state machine versions and aliases (PublishStateMachineVersion, CreateStateMachineAlias) but
starts executions only by the state machine's own ARN: a version ARN reaches an object that cannot start, an
alias ARN is "State Machine Does Not Exist". On AWS ("How Step Functions associates executions with a version
or alias"), StartExecution with an alias ARN runs the version the alias routes to (by its weights), one with
a version ARN runs that version, and either execution is named under the state machine itself
(`execution:<name>:<execution>`), so DescribeExecution and StopExecution find it by that ARN.

`install()` wraps moto's `start_execution` (the executing backend's and the plain one's) to do that: the execution is started on the
state machine with the chosen version's definition and role (moto snapshots the definition when it starts an
execution, so it keeps that version to its end). Idempotent; moto is pinned exactly (requirements-dev.in).
"""

from __future__ import annotations

import random
import threading
from typing import Any

from moto.stepfunctions.exceptions import ResourceNotFound, StateMachineDoesNotExist
from moto.stepfunctions.models import StepFunctionBackend
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

_lock = threading.RLock()
_originals: dict[type, Any] = {}


def _version_number(alias: Any) -> int:
    """The version an alias routes this start to: by weight, as Step Functions does."""
    routes = alias.routing_configuration
    chosen = random.choices(routes, weights=[int(r["weight"]) for r in routes])[0]  # noqa: S311 (routing)
    return int(str(chosen["stateMachineVersionArn"]).rsplit(":", 1)[1])


def _starter(backend: type) -> Any:
    def start_execution(self: Any, state_machine_arn: str, *args: Any, **kwargs: Any) -> Any:
        return _start_execution(_originals[backend], self, state_machine_arn, *args, **kwargs)

    return start_execution


def _start_execution(original: Any, self: Any, state_machine_arn: str, *args: Any, **kwargs: Any) -> Any:
    parts = state_machine_arn.split(":")
    if len(parts) != 8 or parts[5] != "stateMachine":
        return original(self, state_machine_arn, *args, **kwargs)
    base_arn, qualifier = ":".join(parts[:7]), parts[7]
    source = self.describe_state_machine(base_arn)
    if qualifier.isdigit():
        number = int(qualifier)
    else:
        alias = source.aliases.get(qualifier)
        if alias is None:
            raise ResourceNotFound(f"State Machine Alias Does Not Exist: '{state_machine_arn}'")
        number = _version_number(alias)
    version = source.versions.get(number)
    if version is None:
        raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{base_arn}:{number}'")
    with _lock:  # the state machine shows the version only while moto takes its snapshot
        saved = source.definition, source.roleArn
        source.definition, source.roleArn = version.definition, version.roleArn
        try:
            return original(self, base_arn, *args, **kwargs)
        finally:
            source.definition, source.roleArn = saved


def install() -> None:
    with _lock:
        for backend in (StepFunctionBackend, StepFunctionsParserBackend):
            if backend not in _originals:
                _originals[backend] = backend.__dict__["start_execution"]
                backend.start_execution = _starter(backend)  # type: ignore[method-assign]


def auto_publish_alias(template: dict[str, Any], logical_id: str) -> str | None:
    """The alias SAM's `AutoPublishAlias` gives the state machine `logical_id`, if any."""
    alias = template["Resources"][logical_id]["Properties"].get("AutoPublishAlias")
    return str(alias) if alias else None


def point_alias(sfn: Any, state_machine_arn: str, alias: str, version_arn: str) -> str:
    """What a SAM deploy does for `AutoPublishAlias` once the state machine is published (CreateStateMachine /
    UpdateStateMachine with `publish`; moto has no PublishStateMachineVersion): point the alias at the new
    version (creating the alias on the first deploy). Returns the alias ARN."""
    install()
    routing = [{"stateMachineVersionArn": version_arn, "weight": 100}]
    alias_arn = f"{state_machine_arn}:{alias}"
    listed = sfn.list_state_machine_aliases(stateMachineArn=state_machine_arn)["stateMachineAliases"]
    if alias_arn in {a["stateMachineAliasArn"] for a in listed}:
        sfn.update_state_machine_alias(stateMachineAliasArn=alias_arn, routingConfiguration=routing)
        return alias_arn
    return str(
        sfn.create_state_machine_alias(name=alias, routingConfiguration=routing)["stateMachineAliasArn"]
    )
