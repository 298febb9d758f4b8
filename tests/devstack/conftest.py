from tests.exchange_fixtures import (  # noqa: F401 - pytest fixtures
    config_for,
    exchange_config,
    exchange_sim,
    exchange_sim_server,
    strict_config,
    timeout_config,
)
