"""Conditions evaluated as IAM evaluates them (devstack/iam/policy.py)."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.iam.policy import Request, Statement, allows

KEY = "arn:aws:kms:us-east-1:123456789012:key/k"


def _allows(condition: dict[str, Any], context: dict[str, tuple[str, ...]]) -> bool:
    statement = Statement("S", ("kms:Decrypt",), (KEY,), condition)
    return allows(statement, Request("kms:Decrypt", KEY, tuple(sorted(context.items()))))


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [
        # every key of the request must be allowed; a request without the key passes (vacuously)
        (
            {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a", "b"]}},
            {"kms:EncryptionContextKeys": ("a",)},
            True,
        ),
        ({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a", "b"]}}, {}, True),
        (
            {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a"]}},
            {"kms:EncryptionContextKeys": ("a", "c")},
            False,
        ),
        # at least one value must be allowed; none present fails
        (
            {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["a"]}},
            {"kms:EncryptionContextKeys": ("a", "c")},
            True,
        ),
        ({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["a"]}}, {}, False),
        # a single-valued operator on a missing key fails, unless IfExists or negated
        ({"StringEquals": {"kms:EncryptionContext:purpose": "password"}}, {}, False),
        ({"StringEqualsIfExists": {"kms:EncryptionContext:purpose": "password"}}, {}, True),
        ({"StringNotEquals": {"kms:EncryptionContext:purpose": "password"}}, {}, True),
        (
            {"StringNotEquals": {"kms:EncryptionContext:purpose": "password"}},
            {"kms:EncryptionContext:purpose": ("password",)},
            False,
        ),
        # wildcards: * and ? only; key names are case-insensitive, values are not
        (
            {"StringLike": {"kms:EncryptionContext:tenantId": "TENANT#*"}},
            {"kms:encryptioncontext:tenantid": ("TENANT#x",)},
            True,
        ),
        (
            {"StringLike": {"kms:EncryptionContext:tenantId": "TENANT#*"}},
            {"kms:EncryptionContext:tenantId": ("tenant#x",)},
            False,
        ),
        (
            {"StringLike": {"kms:EncryptionContext:tenantId": "[ab]"}},
            {"kms:EncryptionContext:tenantId": ("a",)},
            False,
        ),
        # Null: the key is absent (true) or present (false)
        (
            {"Null": {"kms:EncryptionContext:agentId": "false"}},
            {"kms:EncryptionContext:agentId": ("a",)},
            True,
        ),
        ({"Null": {"kms:EncryptionContext:agentId": "false"}}, {}, False),
        # an operator or a policy variable this evaluator does not know refuses
        ({"NumericLessThan": {"kms:GrantConstraintType": "1"}}, {"kms:GrantConstraintType": ("0",)}, False),
        (
            {"StringEquals": {"kms:EncryptionContext:tenantId": "${aws:PrincipalTag/tenant}"}},
            {"kms:EncryptionContext:tenantId": ("t",)},
            False,
        ),
    ],
)
def test_condition_operators(
    condition: dict[str, Any], context: dict[str, tuple[str, ...]], expected: bool
) -> None:
    assert _allows(condition, context) is expected


def test_actions_are_case_insensitive_and_resources_are_not() -> None:
    statement = Statement("S", ("dynamodb:get*",), ("arn:aws:dynamodb:us-east-1:1:table/Agents",))
    assert allows(statement, Request("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/Agents"))
    assert not allows(statement, Request("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/agents"))
