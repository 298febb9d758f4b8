from tests.m365_fixtures import identity_sim, identity_sim_server, m365_config  # noqa: F401 - fixtures
