"""Fixtures for the Exchange core and simulator tests (used by tests/layer, tests/devstack)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.exchange_sim import ExchangeSimulator
from onboarding.exchange import ExchangeConfig

SIM_BUILD = "15.2.1544.4"
FAST = {"discovery_timeout": 3.0, "verify_timeout": 3.0}


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


@pytest.fixture
def exchange_config(exchange_sim: ExchangeSimulator) -> ExchangeConfig:
    """Small budgets, loopback allowed (the simulator lives there), the simulator's CA trusted."""
    return ExchangeConfig(allow_networks=("127.0.0.0/8",), ca_bundle=exchange_sim.ca_bundle, **FAST)


@pytest.fixture
def strict_config(exchange_sim: ExchangeSimulator) -> ExchangeConfig:
    """Production-like: the allow-list is OFF."""
    return ExchangeConfig(ca_bundle=exchange_sim.ca_bundle, **FAST)
