"""`EmailAddress`: pydantic's `EmailStr` (same validation, errors and JSON schema), with `email_validator`
imported at the first validation instead of when a model is defined, and a fast path for plain addresses.

`EmailStr` imports email_validator as soon as a model using it is built, at import time, and with it
idna's and Unicode's tables: about 0.4 of a bare `import boto3` on every cold start (bench/cold_start.py),
including the functions and routes that never see an address.

Almost every address a dashboard user types is plain ASCII (`ann.lee@contoso.com`): letters, digits and
the few symbols RFC 5322 allows before the @-sign, an ordinary host name after it. For those,
email_validator's answer is known without running it (about 35 us a request, bench/warm_latency.py): the
address is valid, and its normalized form is the address with the domain lowercased. `_plain` accepts
only such addresses and never rejects one: anything else (Unicode, IDNA `xn--` labels, quoting, display
names, spaces, special-use domains, RFC 2142 role names, ...) goes to email_validator, so every error
message is email_validator's own. tests/layer/core/test_email_address.py compares the two on many addresses.
"""

from __future__ import annotations

import functools
import re
from types import ModuleType
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

# RFC 5322 dot-atom (email_validator's DOT_ATOM_TEXT), "@", then host-name labels of 1-63 letters, digits
# and inner hyphens (RFC 952/1123), at least two, the last one ending with a letter (a top-level domain).
# ASCII ranges only (no IGNORECASE: it would let the Kelvin sign match "k").
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,61})?[A-Za-z]"
_PLAIN = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+{_TLD}"
_MAX_LENGTH = 254  # email_validator's EMAIL_MAX_LENGTH (RFC 5321 4.5.3.1.3), checked equal by the tests


@functools.cache
def _email_validator() -> ModuleType:
    import email_validator

    # `.test` is reserved for testing (RFC 2606); the Exchange simulator's mailboxes live there. Allowing
    # it costs nothing in production (no real mailbox can have such an address) and keeps one code path.
    email_validator.SPECIAL_USE_DOMAIN_NAMES = [
        d for d in email_validator.SPECIAL_USE_DOMAIN_NAMES if d != "test"
    ]
    return email_validator


@functools.cache
def _plain_address() -> re.Pattern[str]:
    """Compiled at the first address, not at import (about 0.3 ms): most routes and functions see none."""
    return re.compile(_PLAIN)


@functools.cache
def _role_names() -> frozenset[str]:
    """RFC 2142 mailbox names email_validator lowercases (`Postmaster@` -> `postmaster@`)."""
    from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

    return frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


def _plain(value: str) -> str | None:
    """The normalized form of a plain ASCII address, as email_validator gives it; None for anything else
    (to be validated by email_validator). Never a verdict that the address is invalid."""
    if len(value) > _MAX_LENGTH or not _plain_address().fullmatch(value):
        return None
    local, _, domain = value.partition("@")  # one @-sign: the dot-atom has none
    domain = domain.lower()  # email_validator's UTS-46 mapping of an ASCII host name
    # "ab--" labels are R-LDH (refused) or IDNA A-labels ("xn--", given back in Unicode): its own path.
    if "--" in domain or local.lower() in _role_names():
        return None
    for special in _email_validator().SPECIAL_USE_DOMAIN_NAMES:
        if domain == special or domain.endswith("." + special):
            return None  # refused, with its message
    return f"{local}@{domain}"


def _normalized(value: str) -> str:
    plain = _plain(value)
    if plain is not None:
        return plain
    _email_validator()
    from pydantic.networks import validate_email

    return validate_email(value)[1]


class _LazyEmail:
    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_normalized, core_schema.str_schema())

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        field_schema = handler(schema)
        field_schema.update(type="string", format="email")
        return field_schema


EmailAddress = Annotated[str, _LazyEmail]
