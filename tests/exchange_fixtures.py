"""Fixtures for the Exchange core and simulator tests (used by tests/layer, tests/devstack)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devstack.exchange_sim import ExchangeSimulator, Scenario
from onboarding.exchange import ExchangeConfig

SIM_BUILD = "15.2.1544.4"
# Budgets no answering server comes near, however loaded the machine: a verdict never depends on its speed.
ROOMY = {"discovery_timeout": 60.0, "verify_timeout": 60.0}
# Small budgets, only for servers that never answer (hung TCP, silent DNS): nothing can race them.
SHORT = {"discovery_timeout": 2.0, "verify_timeout": 2.0}


@pytest.fixture(scope="session")
def exchange_sim_server() -> Iterator[ExchangeSimulator]:
    """One simulator per test session; routing is installed per test (see ``exchange_sim``)."""
    with ExchangeSimulator(install_routing=False) as sim:
        yield sim


@pytest.fixture
def exchange_sim(exchange_sim_server: ExchangeSimulator) -> Iterator[ExchangeSimulator]:
    """The simulator with fresh observations and its routing installed for this test only."""
    exchange_sim_server.reset_observations()
    exchange_sim_server.install_routing()
    try:
        yield exchange_sim_server
    finally:
        exchange_sim_server.uninstall_routing()
        exchange_sim_server.reset_controls()  # passwords, locks, expiries, servers: as the scenarios say


@pytest.fixture
def exchange_config(exchange_sim: ExchangeSimulator) -> ExchangeConfig:
    """Roomy budgets, loopback allowed (the simulator lives there), the simulator's CA trusted."""
    return ExchangeConfig(allow_networks=("127.0.0.0/8",), ca_bundle=exchange_sim.ca_bundle, **ROOMY)


@pytest.fixture
def timeout_config(exchange_sim: ExchangeSimulator) -> ExchangeConfig:
    """Short budgets for scenarios whose server never answers (``Scenario.slow``)."""
    return ExchangeConfig(allow_networks=("127.0.0.0/8",), ca_bundle=exchange_sim.ca_bundle, **SHORT)


@pytest.fixture
def config_for(
    exchange_config: ExchangeConfig, timeout_config: ExchangeConfig
) -> Callable[[Scenario], ExchangeConfig]:
    """The budgets for a scenario: short only where the server never answers."""
    return lambda scenario: timeout_config if scenario.slow else exchange_config


@pytest.fixture
def strict_config(exchange_sim: ExchangeSimulator) -> ExchangeConfig:
    """Production-like: the allow-list is OFF."""
    return ExchangeConfig(ca_bundle=exchange_sim.ca_bundle, **ROOMY)
