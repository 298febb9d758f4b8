"""EmailAddress validates, fails and documents itself exactly as pydantic's EmailStr, imported lazily; its
fast path for plain ASCII addresses gives email_validator's own verdict and normalized form."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, EmailStr, ValidationError
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from onboarding.core import email_address
from onboarding.core.email_address import EmailAddress


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
        "from onboarding.core.email_address import EmailAddress\n"
        "class M(BaseModel):\n"
        "    email: EmailAddress\n"
        "M.model_json_schema()\n"
        "print('email_validator' in sys.modules)\n"
        "M(email='ann@contoso.com')\n"
        "print('email_validator' in sys.modules)\n"
    )
    # When
    layer = Path(__file__).resolve().parents[3] / "layers" / "common"
    env = {**os.environ, "PYTHONPATH": str(layer)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    # Then
    assert out.split() == ["False", "True"]


# -- the fast path for plain addresses ------------------------------------------------------------------
def _validators_verdict(value: str) -> tuple[str, str]:
    """email_validator's verdict through pydantic (as EmailStr gives it): the normalized address or why not."""
    email_address._email_validator()  # the same email_validator settings (`.test` allowed)
    try:
        return ("ok", validate_email(value)[1])
    except PydanticCustomError as error:
        return ("error", str(error))


def _ours(value: str) -> tuple[str, str]:
    try:
        return ("ok", email_address._normalized(value))
    except PydanticCustomError as error:
        return ("error", str(error))


ROOM = "a" * (254 - len("@contoso.com"))
# Plain ASCII addresses: the fast path answers, with email_validator's normalized form.
PLAIN = [
    "ann@contoso.com",
    "Ann.Lee@Contoso.COM",
    "ann@cONTOSO.cOm",
    "ANN@CONTOSO.COM",
    "o'brien+tag@sub.contoso.co.uk",
    "a!#$%&'*+/=?^_`{|}~-@x.io",
    "bea@fabrikam.test",
    "a@b.c",
    "ann@123.contoso.com",
    "ann@a-b.c-d.com",
    "ann@contoso.c0m",
    "ann@contoso.info",
    "information@contoso.com",
    "x" * 64 + "@contoso.com",
    "x" * 65 + "@contoso.com",  # over RFC 5321's 64, which email_validator checks only when strict
    "ann@" + "a" * 63 + ".com",
    ROOM + "@contoso.com",  # 254 characters, the most email_validator accepts
]
# Everything else is email_validator's to decide (and to explain).
OTHERS = [
    "ann@bücher.de",  # IDN
    "ann@xn--bcher-kva.de",  # an IDNA A-label: normalized to Unicode
    "ANN@XN--BCHER-KVA.DE",
    "ann@xn--zz.de",  # not valid IDNA
    "用户@例子.广告",
    "josé@contoso.com",  # Unicode local part
    "ann@\uff43ontoso.com",  # fullwidth "c", mapped to ASCII by UTS-46
    "ann@contoso。com",  # ideographic full stop
    "ann@contoso.\u212az",  # Kelvin sign, which lowercases to "k"
    '"ann"@contoso.com',  # quoted local parts
    '"ann lee"@contoso.com',
    '"a@b"@contoso.com',
    "Ann <ann@contoso.com>",
    " ann@contoso.com",
    "ann@contoso.com ",
    "ann@contoso.com.",  # trailing dot
    "ann@.contoso.com",
    "ann@contoso..com",
    "ann..lee@contoso.com",
    ".ann@contoso.com",
    "ann.@contoso.com",
    "ann@-contoso.com",
    "ann@contoso-.com",
    "ann@ab--cd.com",  # R-LDH label
    "ann@a--b.com",
    "ann@contoso.123",
    "ann@contoso.c-",
    "ann@contoso",
    "ann@" + "a" * 64 + ".com",  # label over 63
    ROOM + "a@contoso.com",  # 255 characters
    "ann@localhost",
    "ann@contoso.local",
    "ann@x.onion",
    "ann@x.ARPA",
    "ann@contoso.invalid",
    "Postmaster@contoso.com",  # RFC 2142 role names: lowercased
    "INFO@contoso.com",
    "ann@[10.0.0.1]",
    "ann@@contoso.com",
    "ann@contoso.com\n",
    "ann\x00@contoso.com",
    "ann@contoso.com@fabrikam.com",
    "@contoso.com",
    "ann@",
    "",
]


@pytest.mark.parametrize("value", PLAIN)
def test_plain_addresses_take_the_fast_path_with_email_validators_result(value: str) -> None:
    # Given: an address email_validator accepts
    verdict, normalized = _validators_verdict(value)
    assert verdict == "ok"
    # When
    fast = email_address._plain(value)
    # Then: answered without email_validator, the same normalized form
    assert fast == normalized


@pytest.mark.parametrize("value", OTHERS)
def test_other_addresses_are_left_to_email_validator(value: str) -> None:
    # Given / When
    fast = email_address._plain(value)
    # Then: no answer from the fast path, so the verdict and its message are email_validator's
    assert fast is None
    assert _ours(value) == _validators_verdict(value)


def test_the_fast_path_uses_email_validators_length_limit() -> None:
    from email_validator.rfc_constants import EMAIL_MAX_LENGTH

    assert email_address._MAX_LENGTH == EMAIL_MAX_LENGTH


_ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
_ATOM = st.text(alphabet=_ATEXT, min_size=1, max_size=8)
_LOCAL = st.one_of(
    st.lists(_ATOM, min_size=1, max_size=4).map(".".join),  # dot-atoms
    st.text(alphabet=_ATEXT + ".", min_size=1, max_size=8),  # dots anywhere
    st.sampled_from(["info", "Sales", "POSTMASTER", "x" * 64, "x" * 200]),
)
_LABEL = st.one_of(
    st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,4}[A-Za-z0-9])?", fullmatch=True),  # host-name labels
    st.text(alphabet="abzAZ09-", min_size=1, max_size=6),  # hyphens anywhere
    st.sampled_from(["a" * 63, "a" * 64, "xn--bcher-kva", "xn--zz", "ab--cd", "a--b", "123"]),
)
_TLD = st.one_of(
    st.from_regex(r"[A-Za-z]{1,4}", fullmatch=True),
    st.sampled_from(["test", "local", "localhost", "onion", "arpa", "ARPA", "invalid", "c0m", "c-", "1"]),
)
_DOMAIN = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_LABEL, max_size=3), _TLD)
_TRAILER = st.sampled_from(["", "", "", "", "", ".", " ", "\n", "é", "\u212a"])
_PLAINISH = st.builds(lambda local, domain, end: f"{local}@{domain}{end}", _LOCAL, _DOMAIN, _TRAILER)


@given(_PLAINISH)
def test_fast_path_agrees_with_email_validator_on_generated_addresses(value: str) -> None:
    # Given: dot-atoms and host names of every shape (long labels, hyphens, case, reserved names, xn--)
    # When
    fast = email_address._plain(value)
    # Then: when the fast path answers, email_validator accepts the address with the same normal form
    if fast is not None:
        assert _validators_verdict(value) == ("ok", fast)
    assert _ours(value) == _validators_verdict(value)


@given(st.text(alphabet=_ATEXT + "AZaz09-" + '.@" <>é用\u212a\uff0e', max_size=60))
def test_fast_path_agrees_with_email_validator_on_any_text(value: str) -> None:
    fast = email_address._plain(value)
    if fast is not None:
        assert _validators_verdict(value) == ("ok", fast)
    assert _ours(value) == _validators_verdict(value)
