"""The authorization code flow with PKCE through MSAL, against the identity platform simulator."""

from __future__ import annotations

import time
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from devstack.identity_sim import IdentitySimulator
from onboarding.m365.config import M365Config
from onboarding.m365.oauth import (
    FlowStore,
    ForeignSignInError,
    OAuthClient,
    PendingSignIn,
    SignInError,
    digest,
)
from onboarding.m365.outcomes import M365Reason
from tests.conftest import TABLE_NAME
from tests.m365_fixtures import REDIRECT_URI, Person


@pytest.fixture
def oauth(identity_sim: IdentitySimulator, m365_config: M365Config) -> OAuthClient:
    return OAuthClient(m365_config, lambda: identity_sim.client_secret)


def test_a_flow_asks_for_the_invited_address_with_pkce_and_only_metadata_scopes(oauth: OAuthClient) -> None:
    flow = oauth.start(login_hint="mia@m365.test", redirect_uri=REDIRECT_URI)
    query = parse_qs(urlsplit(flow["auth_uri"]).query)
    assert query["login_hint"] == ["mia@m365.test"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [REDIRECT_URI]
    assert set(query["scope"][0].split()) == {
        "User.Read",
        "Mail.ReadBasic",
        "offline_access",
        "openid",
        "profile",
    }
    assert "code_verifier" not in flow["auth_uri"]
    assert flow["state"] == query["state"][0]


def test_the_code_is_redeemed_for_a_refresh_token_and_nothing_stays_in_memory(
    identity_sim: IdentitySimulator, oauth: OAuthClient
) -> None:
    flow = oauth.start(login_hint="mia@m365.test", redirect_uri=REDIRECT_URI)
    answer = Person(identity_sim).sign_in(flow["auth_uri"], "mia@m365.test")
    grant = oauth.redeem(flow, answer)
    assert grant.username == "mia@m365.test"
    assert grant.refresh_token.get_secret_value()
    assert oauth.app.get_accounts() == []  # MSAL's token cache is emptied after every call
    token_calls = [r for r in identity_sim.requests_seen if r.path.endswith("/oauth2/v2.0/token")]
    assert len(token_calls) == 1
    assert token_calls[0].code
    assert token_calls[0].client_secret
    assert not token_calls[0].password


def test_a_code_used_twice_is_refused(identity_sim: IdentitySimulator, oauth: OAuthClient) -> None:
    flow = oauth.start(login_hint="mia@m365.test", redirect_uri=REDIRECT_URI)
    answer = Person(identity_sim).sign_in(flow["auth_uri"], "mia@m365.test")
    oauth.redeem(dict(flow), answer)
    with pytest.raises(SignInError) as raised:
        oauth.redeem(dict(flow), answer)
    assert raised.value.reason is M365Reason.SIGN_IN_EXPIRED
    assert raised.value.aadsts == 54005


def test_a_tampered_state_is_refused_before_any_token_request(
    identity_sim: IdentitySimulator, oauth: OAuthClient
) -> None:
    flow = oauth.start(login_hint="mia@m365.test", redirect_uri=REDIRECT_URI)
    answer = Person(identity_sim).sign_in(flow["auth_uri"], "mia@m365.test")
    identity_sim.reset_observations()
    with pytest.raises(SignInError) as raised:
        oauth.redeem(flow, {**answer, "state": "forged"})
    assert raised.value.reason is M365Reason.SIGN_IN_INVALID
    assert identity_sim.requests_seen == []


@pytest.mark.parametrize(
    ("address", "consent", "reason"),
    [
        ("mia@m365.test", "cancel", M365Reason.CONSENT_DECLINED),
        ("ben@strict-m365.test", "accept", M365Reason.ADMIN_CONSENT_REQUIRED),
        ("carl@m365.test", "accept", M365Reason.CONDITIONAL_ACCESS),
        ("dan@m365.test", "accept", M365Reason.ACCOUNT_DISABLED),
    ],
)
def test_errors_sent_back_by_microsoft_have_their_own_reason(
    identity_sim: IdentitySimulator, oauth: OAuthClient, address: str, consent: str, reason: M365Reason
) -> None:
    flow = oauth.start(login_hint=address, redirect_uri=REDIRECT_URI)
    answer = Person(identity_sim).answer(flow["auth_uri"], address, consent)
    assert "error" in answer
    with pytest.raises(SignInError) as raised:
        oauth.redeem(flow, answer)
    assert raised.value.reason is reason


def test_a_token_endpoint_that_never_answers_is_a_timeout(
    identity_sim: IdentitySimulator, m365_config: M365Config
) -> None:
    oauth = OAuthClient(replace(m365_config, token_timeout=0.5), lambda: identity_sim.client_secret)
    flow = oauth.start(login_hint="tom@m365.test", redirect_uri=REDIRECT_URI)
    answer = Person(identity_sim).sign_in(flow["auth_uri"], "tom@m365.test")
    with pytest.raises(SignInError) as raised:
        oauth.redeem(flow, answer)
    assert raised.value.reason is M365Reason.TIMEOUT


def test_a_refresh_gives_a_new_access_token_and_a_revoked_grant_is_rejected(
    identity_sim: IdentitySimulator, oauth: OAuthClient
) -> None:
    flow = oauth.start(login_hint="mia@m365.test", redirect_uri=REDIRECT_URI)
    grant = oauth.redeem(flow, Person(identity_sim).sign_in(flow["auth_uri"], "mia@m365.test"))
    refreshed = oauth.refresh(grant.refresh_token)
    access, rotated = refreshed.access_token, refreshed.refresh_token
    assert access.get_secret_value()
    assert access.get_secret_value() != grant.access_token.get_secret_value()
    assert rotated is not None
    identity_sim.revoke_refresh_tokens("mia@m365.test")
    with pytest.raises(SignInError) as raised:
        oauth.refresh(rotated)
    assert raised.value.reason is M365Reason.TOKEN_REJECTED


def test_a_wrong_client_secret_is_a_sign_in_failure_not_a_crash(
    identity_sim: IdentitySimulator, m365_config: M365Config
) -> None:
    oauth = OAuthClient(m365_config, lambda: "not-the-secret")
    with pytest.raises(SignInError) as raised:
        oauth.refresh(SecretStr("whatever"))
    assert raised.value.reason is M365Reason.SIGN_IN_FAILED


# -- the flow's server-side state ---------------------------------------------------------------
def _pending(state: str = "s1") -> PendingSignIn:
    return PendingSignIn(
        tenant_id="t1",
        agent_id="01JAAAAAAAAAAAAAAAAAAAAAAA",
        invite_hash=digest("invite"),
        browser_hash=digest("browser"),
        expires_at=int(time.time()) + 600,
        flow={"state": state, "code_verifier": "v" * 43, "auth_uri": "https://x"},
    )


def test_a_pending_sign_in_is_taken_exactly_once(moto_aws: None) -> None:
    store = FlowStore(TABLE_NAME)
    store.put(_pending())
    bound = {"browser_hash": digest("browser"), "invite_hash": digest("invite")}
    taken = store.take("s1", **bound)
    assert taken is not None
    assert taken.flow["code_verifier"] == "v" * 43
    assert store.take("s1", **bound) is None  # replay
    assert store.take("another", **bound) is None  # a state never issued


@pytest.mark.parametrize(
    "binding",
    [
        {"browser_hash": digest("another browser"), "invite_hash": digest("invite")},
        {"browser_hash": digest("browser"), "invite_hash": digest("another invite")},
    ],
    ids=["another-browser", "another-invite"],
)
def test_a_pending_sign_in_is_taken_only_by_its_own_browser_for_its_own_invite(
    moto_aws: None, binding: dict[str, str]
) -> None:
    store = FlowStore(TABLE_NAME)
    store.put(_pending())
    with pytest.raises(ForeignSignInError):
        store.take("s1", **binding)
    # Left for the browser that started it
    assert store.take("s1", browser_hash=digest("browser"), invite_hash=digest("invite")) is not None


def test_the_stored_item_is_keyed_by_a_hash_of_the_state_and_expires(moto_aws: None) -> None:
    import boto3

    FlowStore(TABLE_NAME).put(_pending("secret-state"))
    items = boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
    assert len(items) == 1
    assert items[0]["pk"]["S"] == f"OAUTH#{digest('secret-state')}"
    assert int(items[0]["ttl"]["N"]) > time.time()


def test_an_id_token_with_another_nonce_is_a_refused_sign_in_not_an_error(
    identity_sim: IdentitySimulator, oauth: OAuthClient
) -> None:
    # Given Microsoft's answer to a flow whose ID token carries a nonce other than the flow's (a token
    # injected from another sign-in)
    flow = oauth.start(login_hint="mia@m365.test", redirect_uri=REDIRECT_URI)
    answer = Person(identity_sim).sign_in(flow["auth_uri"], "mia@m365.test")
    flow["nonce"] = "a-nonce-of-another-sign-in"
    # When it is redeemed, Then MSAL's refusal is the invalid sign-in outcome (a page), not an exception
    with pytest.raises(SignInError) as raised:
        oauth.redeem(flow, answer)
    assert raised.value.reason is M365Reason.SIGN_IN_INVALID


def test_a_refresh_token_microsoft_calls_invalid_is_rejected_whatever_its_code(oauth: OAuthClient) -> None:
    """RFC 6749 section 5.2: `invalid_grant` is a refresh token that is invalid, expired or revoked. Microsoft
    sends an unmapped code here (AADSTS9002313, "malformed or invalid"); the token is dead all the same, not
    an outage to try again for a day."""
    with pytest.raises(SignInError) as raised:
        oauth.refresh(SecretStr("a-token-microsoft-never-issued"))
    assert (raised.value.reason, raised.value.aadsts) == (M365Reason.TOKEN_REJECTED, 9002313)
