from tests.m365_fixtures import identity_sim, identity_sim_server  # noqa: F401 - pytest fixtures
