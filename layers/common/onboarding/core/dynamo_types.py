"""DynamoDB's typed attribute values <-> Python values, as boto3's `TypeSerializer`/`TypeDeserializer` do it.

Our own ~50 lines instead of `boto3.dynamodb.types`: importing that imports boto3, and boto3 imports
s3transfer and more (most of a bare `import boto3` at cold start, bench/cold_start.py); the client
itself comes from botocore (`onboarding.core.aws`). Same rules as boto3 (tests/layer/core/test_dynamo_types.py
checks them against it): numbers are `Decimal` in DynamoDB's context (38 digits; floats are refused,
as inexact), sets by element type, `None` is NULL. Binary values come back as `bytes` (boto3 wraps them
in its `Binary`).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any

DYNAMODB_CONTEXT = Context(
    Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow]
)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def _number(value: int | Decimal) -> str:
    text = str(DYNAMODB_CONTEXT.create_decimal(value))
    if text in {"Infinity", "NaN"}:
        raise TypeError("Infinity and NaN not supported")
    return text


def serialize(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value (`{"S": "x"}`, `{"N": "1"}`, ...)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if _is_number(value):
        return {"N": _number(value)}
    if isinstance(value, float):
        raise TypeError("Float types are not supported. Use Decimal types instead.")
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if isinstance(value, Set):
        if all(_is_number(v) for v in value):
            return {"NS": [_number(v) for v in value]}
        if all(isinstance(v, str) for v in value):
            return {"SS": list(value)}
        if all(isinstance(v, bytes | bytearray) for v in value):
            return {"BS": [bytes(v) for v in value]}
    if isinstance(value, Mapping):
        return {"M": {str(k): serialize(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [serialize(v) for v in value]}
    raise TypeError(f"Unsupported type {type(value)} for value {value!r}")


def deserialize(value: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a Python value."""
    if len(value) != 1:
        raise TypeError("Value must be a nonempty dictionary whose key is a valid dynamodb type.")
    ((kind, data),) = value.items()
    match kind:
        case "NULL":
            return None
        case "BOOL" | "S":
            return data
        case "N":
            return DYNAMODB_CONTEXT.create_decimal(data)
        case "B":
            return bytes(data)
        case "SS":
            return set(data)
        case "NS":
            return {DYNAMODB_CONTEXT.create_decimal(v) for v in data}
        case "BS":
            return {bytes(v) for v in data}
        case "L":
            return [deserialize(v) for v in data]
        case "M":
            return {k: deserialize(v) for k, v in data.items()}
    raise TypeError(f"Dynamodb type {kind} is not supported")


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    # Most attributes are plain strings: `{"S": value}` without dynamo_types' checks for other types.
    return {k: {"S": v} if type(v) is str else serialize(v) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: deserialize(v) for k, v in item.items()}
