"""The workflow's Microsoft 365 check (`GraphVerifier`): the stored refresh token redeemed, Graph asked, with
the real credential store under moto and the identity + Graph simulator."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from devstack.identity_sim import IdentitySimulator
from onboarding.core.credentials import KmsCredentialStore
from onboarding.core.errors import CredentialNotFoundError
from onboarding.m365.config import M365Config
from onboarding.m365.graph import GraphClient, GraphFailure
from onboarding.m365.oauth import OAuthClient, RefreshedTokens
from onboarding.m365.outcomes import M365Reason
from onboarding.verification.microsoft import REFRESH_TOKEN, GraphVerifier
from tests.conftest import stored_secrets
from tests.m365_fixtures import REDIRECT_URI, Person

AGENT = "01HZY0000000000000000000AA"


def signed_in(sim: IdentitySimulator, oauth: OAuthClient, address: str) -> SecretStr:
    flow = oauth.start(login_hint=address, redirect_uri=REDIRECT_URI)
    return oauth.redeem(flow, Person(sim).sign_in(flow["auth_uri"], address)).refresh_token


class RemovedDuringRefresh(OAuthClient):
    """Microsoft answers the refresh (with a rotated refresh token) while the dashboard removes the agent."""

    def __init__(self, config: M365Config, sim: IdentitySimulator, credentials: KmsCredentialStore) -> None:
        super().__init__(config, lambda: sim.client_secret)
        self.credentials = credentials

    def refresh(self, refresh_token: SecretStr) -> RefreshedTokens:
        answer = super().refresh(refresh_token)
        self.credentials.delete("demo", AGENT)  # the removal's secret delete lands now
        return answer


def test_a_rotated_refresh_token_is_not_sealed_again_after_the_agent_was_removed(
    identity_sim: IdentitySimulator, m365_config: M365Config, credentials: KmsCredentialStore
) -> None:
    # Given a stored refresh token, and the agent removed while Microsoft rotates it
    oauth = OAuthClient(m365_config, lambda: identity_sim.client_secret)
    credentials.put("demo", AGENT, signed_in(identity_sim, oauth, "mia@m365.test"), purpose=REFRESH_TOKEN)
    racing = RemovedDuringRefresh(m365_config, identity_sim, credentials)
    verifier = GraphVerifier(credentials, lambda: racing, lambda: GraphClient(m365_config))
    # When the workflow's check runs, Then it stops as for a token that is gone, and no token is stored again
    with pytest.raises(CredentialNotFoundError):
        verifier.verify("demo", AGENT, "mia@m365.test")
    assert stored_secrets(AGENT) == []


def test_an_account_of_another_tenant_whose_mail_names_the_invited_address_is_not_verified(
    identity_sim: IdentitySimulator, m365_config: M365Config, credentials: KmsCredentialStore
) -> None:
    # Given an invite for mia@m365.test, and someone signing in with an account of their own tenant whose
    # (unverified) `mail` they set to mia@m365.test
    oauth = OAuthClient(m365_config, lambda: identity_sim.client_secret)
    credentials.put(
        "demo", AGENT, signed_in(identity_sim, oauth, "mallory@rogue-m365.test"), purpose=REFRESH_TOKEN
    )
    verifier = GraphVerifier(credentials, lambda: oauth, lambda: GraphClient(m365_config))
    # When the workflow checks the mailbox, Then the signed-in tenant is not the one that owns m365.test
    # (home realm discovery for the domain): refused as another account, before its mailbox is read
    identity_sim.reset_observations()
    with pytest.raises(GraphFailure) as raised:
        verifier.verify("demo", AGENT, "mia@m365.test")
    assert raised.value.reason is M365Reason.WRONG_ACCOUNT
    assert raised.value.signed_in == "mallory@rogue-m365.test"
    assert not [r for r in identity_sim.requests_seen if r.path.endswith("/inbox")]


def test_the_invited_account_in_the_domains_own_tenant_is_verified(
    identity_sim: IdentitySimulator, m365_config: M365Config, credentials: KmsCredentialStore
) -> None:
    oauth = OAuthClient(m365_config, lambda: identity_sim.client_secret)
    credentials.put("demo", AGENT, signed_in(identity_sim, oauth, "olivia@m365.test"), purpose=REFRESH_TOKEN)
    verifier = GraphVerifier(credentials, lambda: oauth, lambda: GraphClient(m365_config))
    assert verifier.verify("demo", AGENT, "sales@m365.test").inbox_item_count == 40  # an alias, same tenant


class ResignedDuringRefresh(OAuthClient):
    """Microsoft answers the refresh (with a rotated refresh token) while the owner signs in again and the
    connect page seals the new sign-in's token."""

    def __init__(self, config: M365Config, sim: IdentitySimulator, credentials: KmsCredentialStore) -> None:
        super().__init__(config, lambda: sim.client_secret)
        self.sim, self.credentials = sim, credentials
        self.newer: SecretStr | None = None

    def refresh(self, refresh_token: SecretStr) -> RefreshedTokens:
        answer = super().refresh(refresh_token)
        self.newer = signed_in(self.sim, self, "mia@m365.test")
        self.credentials.put("demo", AGENT, self.newer, purpose=REFRESH_TOKEN)
        return answer


def test_a_rotated_refresh_token_is_not_sealed_over_a_newer_sign_ins_token(
    identity_sim: IdentitySimulator, m365_config: M365Config, credentials: KmsCredentialStore
) -> None:
    # Given a stored refresh token, and the owner signing in again while Microsoft rotates it
    oauth = OAuthClient(m365_config, lambda: identity_sim.client_secret)
    credentials.put("demo", AGENT, signed_in(identity_sim, oauth, "mia@m365.test"), purpose=REFRESH_TOKEN)
    racing = ResignedDuringRefresh(m365_config, identity_sim, credentials)
    verifier = GraphVerifier(credentials, lambda: racing, lambda: GraphClient(m365_config))
    # When the workflow's check runs, Then it stops (the newer sign-in's workflow verifies) and the newer
    # sign-in's token is the one stored
    with pytest.raises(CredentialNotFoundError):
        verifier.verify("demo", AGENT, "mia@m365.test")
    assert racing.newer is not None
    stored = credentials.get("demo", AGENT, purpose=REFRESH_TOKEN)
    assert stored.get_secret_value() == racing.newer.get_secret_value()
