"""Verification over Microsoft Graph against the simulator: who signed in, and the inbox."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import SecretStr

from devstack.identity_sim import IdentitySimulator
from onboarding.m365.config import M365Config
from onboarding.m365.graph import GraphClient, GraphFailure, addresses_of
from onboarding.m365.oauth import OAuthClient
from onboarding.m365.outcomes import M365Reason
from tests.m365_fixtures import REDIRECT_URI, Person


def access_token(sim: IdentitySimulator, config: M365Config, address: str) -> SecretStr:
    oauth = OAuthClient(config, lambda: sim.client_secret)
    flow = oauth.start(login_hint=address, redirect_uri=REDIRECT_URI)
    return oauth.redeem(flow, Person(sim).sign_in(flow["auth_uri"], address)).access_token


def test_the_invited_mailbox_is_verified_with_its_inbox_count(
    identity_sim: IdentitySimulator, m365_config: M365Config
) -> None:
    token = access_token(identity_sim, m365_config, "mia@m365.test")
    mailbox = GraphClient(m365_config).verify_mailbox("MIA@m365.test", token)
    assert (mailbox.address, mailbox.inbox_item_count) == ("mia@m365.test", 12)
    graph_calls = [r for r in identity_sim.requests_seen if r.service == "graph"]
    assert [r.path for r in graph_calls] == ["/v1.0/me", "/v1.0/me/mailFolders/inbox"]
    assert all(r.bearer and not (r.password or r.client_secret or r.refresh_token) for r in graph_calls)


def test_an_invite_for_an_alias_is_verified_by_the_proxy_addresses(
    identity_sim: IdentitySimulator, m365_config: M365Config
) -> None:
    token = access_token(identity_sim, m365_config, "olivia@m365.test")
    mailbox = GraphClient(m365_config).verify_mailbox("sales@m365.test", token)
    assert (mailbox.address, mailbox.inbox_item_count) == ("olivia.hart@m365.test", 40)


def test_another_account_than_the_invited_one_is_named(
    identity_sim: IdentitySimulator, m365_config: M365Config
) -> None:
    token = access_token(identity_sim, m365_config, "mia@m365.test")
    with pytest.raises(GraphFailure) as raised:
        GraphClient(m365_config).verify_mailbox("olivia@m365.test", token)
    assert raised.value.reason is M365Reason.WRONG_ACCOUNT
    assert raised.value.signed_in == "mia@m365.test"
    # The inbox of the wrong account is not read.
    assert [r.path for r in identity_sim.requests_seen if r.service == "graph"] == ["/v1.0/me"]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("ava@m365.test", M365Reason.NO_MAILBOX),
        ("ethan@m365.test", M365Reason.ACCESS_DENIED),
        ("henry@m365.test", M365Reason.UNAVAILABLE),
    ],
)
def test_graph_errors_become_reasons(
    identity_sim: IdentitySimulator, m365_config: M365Config, address: str, reason: M365Reason
) -> None:
    token = access_token(identity_sim, m365_config, address)
    with pytest.raises(GraphFailure) as raised:
        GraphClient(m365_config).verify_mailbox(address, token)
    assert raised.value.reason is reason


def test_a_5xx_asking_for_a_wait_beyond_the_budget_is_reported_at_once(
    identity_sim: IdentitySimulator, m365_config: M365Config
) -> None:
    # Given Graph answers 503 with Retry-After: 10 and our budget is 6 s
    token = access_token(identity_sim, m365_config, "henry@m365.test")
    with pytest.raises(GraphFailure) as raised:
        GraphClient(m365_config).verify_mailbox("henry@m365.test", token)
    # Then we do not sleep into the budget: one request, reported as unavailable
    assert raised.value.reason is M365Reason.UNAVAILABLE
    assert len([r for r in identity_sim.requests_seen if r.service == "graph"]) == 1


def test_a_rejected_token_is_a_401_reason(identity_sim: IdentitySimulator, m365_config: M365Config) -> None:
    with pytest.raises(GraphFailure) as raised:
        GraphClient(m365_config).verify_mailbox("mia@m365.test", SecretStr("eyJnot.a.token"))
    assert raised.value.reason is M365Reason.TOKEN_REJECTED


def test_429_retry_after_is_honoured_within_the_budget(
    identity_sim: IdentitySimulator, m365_config: M365Config
) -> None:
    token = access_token(identity_sim, m365_config, "grace@m365.test")
    mailbox = GraphClient(m365_config).verify_mailbox("grace@m365.test", token)
    assert mailbox.inbox_item_count == 7
    statuses = [r.status for r in identity_sim.requests_seen if r.service == "graph"]
    assert statuses[0] == 429
    assert statuses[-1] == 200


def test_429_beyond_the_budget_is_throttled(identity_sim: IdentitySimulator, m365_config: M365Config) -> None:
    token = access_token(identity_sim, m365_config, "grace@m365.test")
    with pytest.raises(GraphFailure) as raised:
        GraphClient(replace(m365_config, graph_budget=0.5)).verify_mailbox("grace@m365.test", token)
    assert raised.value.reason is M365Reason.THROTTLED


def test_addresses_of_reads_smtp_proxies_only() -> None:
    me = {
        "mail": None,
        "userPrincipalName": "A@x.test",
        "proxyAddresses": ["SMTP:b@x.test", "x500:/o=ex", "smtp:c@x.test"],
    }
    assert addresses_of(me) == {"a@x.test", "b@x.test", "c@x.test"}
