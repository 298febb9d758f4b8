"""Routing before the password: Microsoft 365 or the Exchange form, decided without credentials."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest

from devstack.identity_sim import IdentitySimulator
from onboarding.m365.config import M365Config
from onboarding.m365.routing import Evidence, Route, Router, is_exchange_online_host


@pytest.mark.parametrize(
    ("address", "route", "evidence"),
    [
        ("mia@m365.test", Route.M365, Evidence.REALM_MANAGED),
        ("fiona@fedcorp-m365.test", Route.M365, Evidence.REALM_FEDERATED),
        ("bea@fabrikam.test", Route.EXCHANGE, Evidence.REALM_UNKNOWN),
    ],
)
def test_home_realm_discovery_routes_the_address(
    identity_sim: IdentitySimulator, m365_config: M365Config, address: str, route: Route, evidence: Evidence
) -> None:
    # Given the identity platform knows the domain as Managed / Federated / not at all
    # When the connect page asks where this address goes
    decision = Router(m365_config).decide(address)
    # Then the route follows the realm, and the only request was the realm lookup, without credentials
    assert (decision.route, decision.evidence) == (route, evidence)
    seen = identity_sim.requests_seen
    assert [r.path for r in seen] == [f"/common/userrealm/{address}"]
    assert not any(r.password or r.bearer or r.client_secret or r.code or r.refresh_token for r in seen)


@pytest.mark.parametrize(
    "server",
    ["outlook.office365.com", "OUTLOOK.office.com", "mail.office365.com", "contoso.mail.onmicrosoft.com"],
)
def test_an_exchange_online_server_typed_by_the_owner_is_microsoft_365_without_asking(
    identity_sim: IdentitySimulator, m365_config: M365Config, server: str
) -> None:
    decision = Router(m365_config).decide("bea@fabrikam.test", server)
    assert (decision.route, decision.evidence) == (Route.M365, Evidence.EXCHANGE_ONLINE_SERVER)
    assert identity_sim.requests_seen == []


def test_exchange_online_host_names() -> None:
    assert is_exchange_online_host("outlook.office365.com.")
    assert not is_exchange_online_host("mail.contoso.com")
    assert not is_exchange_online_host("office365.com.evil.test")
    assert not is_exchange_online_host(None)


def test_a_domain_is_looked_up_once_then_remembered(
    identity_sim: IdentitySimulator, m365_config: M365Config
) -> None:
    router = Router(m365_config)
    assert router.decide("mia@m365.test").is_m365
    assert router.decide("olivia@M365.test").is_m365
    assert len(identity_sim.requests_seen) == 1


def test_without_an_entra_app_nothing_is_asked_and_the_exchange_form_stays(
    identity_sim: IdentitySimulator, m365_config: M365Config
) -> None:
    decision = Router(replace(m365_config, client_id="")).decide("mia@m365.test")
    assert (decision.route, decision.evidence) == (Route.EXCHANGE, Evidence.NOT_CONFIGURED)
    assert identity_sim.requests_seen == []


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers (not even the TLS handshake)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_realm_lookup_that_never_answers_falls_back_to_the_exchange_form(
    m365_config: M365Config, silent_server: str
) -> None:
    router = Router(replace(m365_config, authority_host=silent_server, routing_budget=0.5))
    decision = router.decide("mia@m365.test")
    assert (decision.route, decision.evidence) == (Route.EXCHANGE, Evidence.LOOKUP_FAILED)


def test_a_failed_lookup_is_not_remembered(m365_config: M365Config, silent_server: str) -> None:
    router = Router(replace(m365_config, authority_host=silent_server, routing_budget=0.3))
    router.decide("mia@m365.test")
    router.config = m365_config  # the identity platform answers again
    assert router.decide("mia@m365.test").evidence is Evidence.REALM_MANAGED


def test_untrusted_certificate_is_doubt_not_microsoft_365(m365_config: M365Config) -> None:
    # Certificate checks stay on: without the simulator's CA the answer cannot be trusted.
    router = Router(replace(m365_config, ca_bundle=None))
    assert router.decide("mia@m365.test").evidence is Evidence.LOOKUP_FAILED
