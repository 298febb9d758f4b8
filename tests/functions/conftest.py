"""Fixtures of the function tests: the connect page's environment (moto, the CSRF key, an invited agent),
the Exchange simulator and the Microsoft identity simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.connect_helpers import ConnectEnv, Invited, connect_environment
from tests.exchange_fixtures import exchange_sim, exchange_sim_server  # noqa: F401 - pytest fixtures
from tests.m365_fixtures import identity_sim, identity_sim_server  # noqa: F401 - pytest fixtures


@pytest.fixture
def env(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectEnv]:
    """The connect page's function under moto, as the template configures it."""
    with connect_environment(monkeypatch) as connect_env:
        yield connect_env


@pytest.fixture
def invited(env: ConnectEnv) -> Invited:
    """An agent whose invite went out, and its link's token."""
    return env.invite()
