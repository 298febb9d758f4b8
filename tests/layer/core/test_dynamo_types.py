"""onboarding.core.dynamo_types converts exactly as boto3's TypeSerializer / TypeDeserializer do."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from onboarding.core import dynamo_types

numbers = st.integers(min_value=-(10**37), max_value=10**37) | st.decimals(
    allow_nan=False, allow_infinity=False, places=6, min_value=-(10**20), max_value=10**20
)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=20) | st.binary(min_size=1, max_size=8)
sets = (
    st.sets(st.integers(-1000, 1000), min_size=1, max_size=4)
    | st.sets(st.text(max_size=5), min_size=1, max_size=4)
    | st.sets(st.binary(min_size=1, max_size=4), min_size=1, max_size=4)
)
values = st.recursive(
    scalars | sets,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)


def _plain(value: Any) -> Any:
    """boto3's deserialized value with its Binary wrapper unwrapped (ours gives bytes)."""
    if isinstance(value, Binary):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return {_plain(v) for v in value}
    return value


def _canonical(attribute: Any) -> Any:
    """Sets' element order is arbitrary on both sides."""
    if isinstance(attribute, dict):
        return {k: sorted(v) if k in {"SS", "NS", "BS"} else _canonical(v) for k, v in attribute.items()}
    if isinstance(attribute, list):
        return [_canonical(v) for v in attribute]
    if isinstance(attribute, Binary):
        return attribute.value
    return attribute


@given(values)
def test_serializes_as_boto3_does(value: Any) -> None:
    # When
    ours = dynamo_types.serialize(value)
    theirs = TypeSerializer().serialize(value)
    # Then
    assert _canonical(ours) == _canonical(theirs)


@given(values)
def test_deserializes_as_boto3_does(value: Any) -> None:
    # Given
    attribute = TypeSerializer().serialize(value)
    # When / Then
    assert dynamo_types.deserialize(attribute) == _plain(TypeDeserializer().deserialize(attribute))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, "Float types are not supported"),
        (Decimal("Infinity"), "Infinity and NaN not supported"),
        (object(), "Unsupported type"),
    ],
)
def test_refuses_what_boto3_refuses(value: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        dynamo_types.serialize(value)
    with pytest.raises(TypeError):
        TypeSerializer().serialize(value)


def test_an_inexact_number_is_refused_not_rounded() -> None:
    # Given: 39 significant digits, one more than DynamoDB keeps
    value = Decimal("1" * 39)
    # When / Then
    with pytest.raises(Exception, match=r"Inexact|Rounded"):
        dynamo_types.serialize(value)
