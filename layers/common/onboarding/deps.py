"""How a function gets its collaborators: each `functions/<name>/app.py` has one cached `deps()` that
builds its repositories, stores and AWS clients from that function's settings, at the first request.

Every AWS client reaches the logic the same way: created here (through `onboarding.core.aws`) and passed in.
`reset()` forgets all of it (every function's deps, the settings, the clients), so a test that changes
the environment or enters another moto context resets one thing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from onboarding import settings
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core import aws
from onboarding.core.credentials import KmsCredentialStore
from onboarding.invites.store import DynamoInviteRepository

T = TypeVar("T")
_RESETS: list[Callable[[], None]] = []


def cached(factory: Callable[[], T]) -> Callable[[], T]:
    """`functools.cache` for a function's `deps()`, registered so that `reset()` clears it."""
    wrapped = functools.cache(factory)
    _RESETS.append(wrapped.cache_clear)
    return wrapped


def on_reset(clear: Callable[[], None]) -> None:
    """Another cache a function keeps (e.g. Powertools' parameters) that `reset()` must clear too."""
    _RESETS.append(clear)


def reset() -> None:
    """Forget every function's deps, the cached settings and the AWS clients."""
    for clear in _RESETS:
        clear()
    for value in vars(settings).values():
        clear_settings = getattr(value, "cache_clear", None)
        if callable(clear_settings):
            clear_settings()
    aws.reset_clients()


# -- builders the functions' deps share -----------------------------------------------------------
def agent_repository(table_name: str) -> DynamoAgentRepository:
    return DynamoAgentRepository(table_name, aws.client("dynamodb"))


def invite_repository(table_name: str) -> DynamoInviteRepository:
    """Invites live in the agents table."""
    return DynamoInviteRepository(table_name, aws.client("dynamodb"))


def credential_store(table_name: str, key_arn: str | None = None) -> KmsCredentialStore:
    """Without a key the store can only delete (what the dashboard API may do). It takes the process's KMS
    client when it first seals or opens a secret."""
    return KmsCredentialStore(table_name, key_arn, ddb=aws.client("dynamodb"))
