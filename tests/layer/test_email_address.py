"""EmailAddress validates, fails and documents itself exactly as pydantic's EmailStr, imported lazily."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, EmailStr, ValidationError

from onboarding.email_address import EmailAddress


class Ours(BaseModel):
    email: EmailAddress


class Pydantics(BaseModel):
    email: EmailStr


SAMPLES = [
    "ann@contoso.com",
    "Ann.Lee@Contoso.COM",
    "  spaced@contoso.com  ",
    "Ann Lee <ann@contoso.com>",
    "bea@fabrikam.test",
    "用户@例子.广告",
    "nope",
    "",
    "a@b",
    "ann@localhost",
    "ann@contoso..com",
    "ann@[10.0.0.1]",
    "line\nbreak@contoso.com",
    "x" * 400 + "@contoso.com",
    "ann@contoso.invalid",
]


def _outcome(model: type[BaseModel], value: object) -> object:
    try:
        return ("ok", model.model_validate({"email": value}).model_dump())
    except ValidationError as error:
        return ("error", [(e["type"], e["msg"], e["loc"]) for e in error.errors()])


@pytest.mark.parametrize("value", [*SAMPLES, 42, None])
def test_same_outcome_as_email_str(value: object) -> None:
    assert _outcome(Ours, value) == _outcome(Pydantics, value)


@given(st.text(max_size=40) | st.emails())
def test_same_outcome_as_email_str_for_any_text(value: str) -> None:
    assert _outcome(Ours, value) == _outcome(Pydantics, value)


def test_same_json_schema_as_email_str() -> None:
    assert Ours.model_json_schema()["properties"] == Pydantics.model_json_schema()["properties"]


def test_test_domains_are_accepted() -> None:
    assert Ours(email="bea@fabrikam.test").email == "bea@fabrikam.test"


def test_defining_a_model_does_not_import_email_validator() -> None:
    # Given: a fresh interpreter
    code = (
        "import sys\n"
        "from pydantic import BaseModel\n"
        "from onboarding.email_address import EmailAddress\n"
        "class M(BaseModel):\n"
        "    email: EmailAddress\n"
        "M.model_json_schema()\n"
        "print('email_validator' in sys.modules)\n"
        "M(email='ann@contoso.com')\n"
        "print('email_validator' in sys.modules)\n"
    )
    # When
    layer = Path(__file__).resolve().parents[2] / "layers" / "common"
    env = {**os.environ, "PYTHONPATH": str(layer)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    # Then
    assert out.split() == ["False", "True"]
