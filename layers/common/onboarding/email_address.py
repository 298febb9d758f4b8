"""`EmailAddress`: pydantic's `EmailStr` (same validation, errors and JSON schema), with `email_validator`
imported at the first validation instead of when a model is defined.

`EmailStr` imports email_validator as soon as a model using it is built, at import time, and with it
idna's and Unicode's tables: about 0.4 of a bare `import boto3` on every cold start (bench/cold_start.py),
including the functions and routes that never see an address.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


@functools.cache
def _validate_email() -> Callable[[str], tuple[str, str]]:
    import email_validator
    from pydantic.networks import validate_email

    # `.test` is reserved for testing (RFC 2606); the Exchange simulator's mailboxes live there. Allowing
    # it costs nothing in production (no real mailbox can have such an address) and keeps one code path.
    email_validator.SPECIAL_USE_DOMAIN_NAMES = [
        d for d in email_validator.SPECIAL_USE_DOMAIN_NAMES if d != "test"
    ]
    return validate_email


def _normalized(value: str) -> str:
    return _validate_email()(value)[1]


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
