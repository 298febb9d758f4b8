"""The Microsoft 365 health check against the identity + Graph simulator: the real probe (MSAL, Graph), the real
checker and repository and credential store (moto). What each of Microsoft's answers does to the agent, how
many requests a check costs, and the rotated refresh token sealed in place of the old one, never over a newer
one the owner sealed meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from pydantic import SecretStr

from devstack.identity_sim import IdentitySimulator
from onboarding.agents.models import Agent, AgentRecord, AgentStatus, Attr
from onboarding.agents.schedule import scheduled_attributes
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core.credentials import KmsCredentialStore
from onboarding.health.check import CheckReport, HealthChecker, Outcome
from onboarding.health.models import CheckMessage, HealthPolicy, Verdict
from onboarding.health.probes import REFRESH_TOKEN, MicrosoftProbe
from onboarding.m365.config import M365Config
from onboarding.m365.graph import GraphClient
from onboarding.m365.oauth import OAuthClient, RefreshedTokens
from tests import lifecycle
from tests.m365_fixtures import REDIRECT_URI, Person

S = AgentStatus
T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
POLICY = HealthPolicy()
MIA = "mia@m365.test"


@pytest.fixture(autouse=True)
def controls_reset(identity_sim: IdentitySimulator) -> Iterator[None]:
    """The simulator is shared by the session: what a test switched on (disabled, locked, outage) ends."""
    yield
    identity_sim.reset_controls()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class RacingOAuth(OAuthClient):
    """Our OAuth client, with something happening while Microsoft redeems the refresh token."""

    during: Callable[[], None] | None = None

    def refresh(self, refresh_token: SecretStr) -> RefreshedTokens:
        answer = super().refresh(refresh_token)
        if self.during is not None:
            self.during()
        return answer


class Mailbox:
    """A Microsoft 365 agent connected as onboarding leaves it (verified, scheduled, verify_method graph,
    its refresh token sealed), and the checker the checker function builds for it."""

    def __init__(
        self,
        sim: IdentitySimulator,
        config: M365Config,
        repo: DynamoAgentRepository,
        credentials: KmsCredentialStore,
        address: str = MIA,
    ) -> None:
        self.sim, self.repo, self.credentials, self.clock = sim, repo, credentials, Clock()
        self.oauth = RacingOAuth(config, lambda: sim.client_secret)
        self.graph = GraphClient(config)
        agent = lifecycle.add(repo, email=address)
        self.agent: Agent = lifecycle.walk(
            repo,
            agent,
            S.VERIFIED,
            set_attributes={
                **scheduled_attributes(agent.agent_id, T0),
                Attr.ATTEMPT: 1,
                Attr.VERIFY_METHOD: "graph",
            },
        )
        self.first_token = self.sign_in(address)
        credentials.put(self.agent.tenant_id, self.agent.agent_id, self.first_token, purpose=REFRESH_TOKEN)
        probe = MicrosoftProbe(credentials, lambda: self.oauth, lambda: self.graph)
        self.checker = HealthChecker(
            repo,
            exchange=lambda: pytest.fail("not an Exchange mailbox"),
            microsoft=lambda: probe,
            policy=POLICY,
            clock=self.clock,
        )

    def sign_in(self, address: str) -> SecretStr:
        """The owner's Sign in with Microsoft (the connect page's code flow): a new refresh token."""
        flow = self.oauth.start(login_hint=address, redirect_uri=REDIRECT_URI)
        return self.oauth.redeem(flow, Person(self.sim).sign_in(flow["auth_uri"], address)).refresh_token

    def check(self, cause: Literal["schedule", "manual"] = "schedule") -> CheckReport:
        message = CheckMessage(tenant_id=self.agent.tenant_id, agent_id=self.agent.agent_id, cause=cause)
        return self.checker.check(message)

    def record(self) -> AgentRecord:
        found = self.repo.get_record(self.agent.tenant_id, self.agent.agent_id)
        assert found is not None
        return found

    def stored_token(self) -> str:
        stored = self.credentials.get(self.agent.tenant_id, self.agent.agent_id, purpose=REFRESH_TOKEN)
        return stored.get_secret_value()

    def requests(self) -> list[str]:
        """What the check asked of Microsoft: `metadata`, `token` (a refresh) and `graph`."""
        kinds = []
        for seen in self.sim.requests_seen:
            if seen.service == "graph":
                kinds.append("graph")
            elif seen.path.endswith("/oauth2/v2.0/token"):
                kinds.append("token")
            elif "openid-configuration" in seen.path:
                kinds.append("metadata")
            else:
                kinds.append(seen.path)
        return kinds


@pytest.fixture
def mailbox(
    identity_sim: IdentitySimulator,
    m365_config: M365Config,
    repo: DynamoAgentRepository,
    credentials: KmsCredentialStore,
) -> Mailbox:
    return Mailbox(identity_sim, m365_config, repo, credentials)


def test_a_healthy_check_costs_two_requests_warm_and_seals_the_rotated_token_in_place_of_the_old(
    mailbox: Mailbox, identity_sim: IdentitySimulator
) -> None:
    # Given a connected mailbox whose checker process already signed someone in (MSAL's app, with the
    # authority's metadata, is kept across warm invocations)
    identity_sim.reset_observations()

    # When it is checked twice
    first = mailbox.check()
    after_first = mailbox.stored_token()
    first_requests = mailbox.requests()
    identity_sim.reset_observations()
    mailbox.clock.now = T0 + POLICY.interval
    second = mailbox.check()

    # Then each check is one token redemption and one Graph call; the tick stays, the inbox is counted
    assert (first.verdict, second.verdict) == (Verdict.HEALTHY, Verdict.HEALTHY)
    assert first_requests == ["token", "graph"]
    assert mailbox.requests() == ["token", "graph"]
    record = mailbox.record()
    assert (record.agent.status, record.health.check_state) == (S.VERIFIED, "ok")
    assert record.connection.inbox_item_count == identity_sim.users[MIA].inbox.total
    # And Microsoft's rotated refresh token replaced the stored one each time (one item, the newest token)
    assert after_first != mailbox.first_token.get_secret_value()
    assert mailbox.stored_token() not in (after_first, mailbox.first_token.get_secret_value())


def test_a_cold_check_also_reads_the_authoritys_metadata_once(
    identity_sim: IdentitySimulator,
    m365_config: M365Config,
    repo: DynamoAgentRepository,
    credentials: KmsCredentialStore,
) -> None:
    # Given a mailbox connected by another process (the connect page's): this checker process is new
    connected = Mailbox(identity_sim, m365_config, repo, credentials)
    oauth = OAuthClient(m365_config, lambda: identity_sim.client_secret)
    cold = MicrosoftProbe(credentials, lambda: oauth, lambda: connected.graph)
    connected.checker.microsoft = lambda: cold
    identity_sim.reset_observations()

    # When it checks twice
    connected.check()
    cold_requests = connected.requests()
    identity_sim.reset_observations()
    connected.clock.now = T0 + POLICY.interval
    connected.check()

    # Then the first check (a cold start) costs the metadata once more; the next ones two requests
    assert cold_requests == ["metadata", "token", "graph"]
    assert connected.requests() == ["token", "graph"]


def test_revoked_refresh_tokens_need_a_reconnect_and_are_never_redeemed_again(
    mailbox: Mailbox, identity_sim: IdentitySimulator
) -> None:
    # Given the owner's password reset (an admin's "revoke sessions"): every refresh token of theirs is dead
    identity_sim.revoke_refresh_tokens(MIA)
    identity_sim.reset_observations()

    # When the schedule and the dashboard keep checking for days
    first = mailbox.check()
    for hours in range(1, 24 * 7, 6):
        mailbox.clock.now = T0 + timedelta(hours=hours)
        mailbox.check()
        mailbox.check(cause="manual")

    # Then AADSTS50173 moved the agent to needs_reconnect at once, and the token was redeemed exactly once
    record = mailbox.record()
    assert (first.verdict, record.agent.status, record.agent.status_reason) == (
        Verdict.REFUSED,
        S.NEEDS_RECONNECT,
        "m365_token_rejected",
    )
    assert sum(seen.refresh_token for seen in identity_sim.requests_seen) == 1
    assert record.health.reconnect_emails >= 1


@pytest.mark.parametrize(
    ("control", "reason"),
    [
        (lambda sim: sim.disable_user(MIA), "m365_account_disabled"),  # AADSTS50057
        # AADSTS65001 on a refresh: the grant was withdrawn (not "an administrator must approve first")
        (lambda sim: sim.withdraw_consent(MIA), "m365_consent_declined"),
    ],
    ids=["disabled", "consent-withdrawn"],
)
def test_a_disabled_account_or_withdrawn_consent_needs_a_reconnect(
    mailbox: Mailbox,
    identity_sim: IdentitySimulator,
    control: Callable[[IdentitySimulator], None],
    reason: str,
) -> None:
    control(identity_sim)

    report = mailbox.check()

    record = mailbox.record()
    assert (report.verdict, record.agent.status) == (Verdict.REFUSED, S.NEEDS_RECONNECT)
    assert record.health.check_state == "refused"
    assert record.agent.status_reason == reason


def test_a_locked_account_is_not_tried_inside_the_lockout_window(
    mailbox: Mailbox, identity_sim: IdentitySimulator
) -> None:
    # Given Smart Lockout locked the account (AADSTS50053)
    identity_sim.lock_user(MIA)
    identity_sim.reset_observations()

    # When the schedule checks, and the dashboard asks again inside the window
    report = mailbox.check()
    mailbox.clock.now = T0 + timedelta(minutes=10)
    again = mailbox.check(cause="manual")

    # Then the agent keeps its tick, is locked until the window ends, and Microsoft was asked once
    record = mailbox.record()
    assert report.verdict is Verdict.LOCKED
    assert again.outcome is Outcome.SKIPPED
    assert (record.agent.status, record.health.check_state) == (S.VERIFIED, "locked")
    assert record.health.locked_until is not None
    assert sum(seen.refresh_token for seen in identity_sim.requests_seen) == 1


def test_an_outage_of_the_token_endpoint_is_transient_and_keeps_the_tick(
    mailbox: Mailbox, identity_sim: IdentitySimulator
) -> None:
    # Given the token endpoint answering 503 temporarily_unavailable (AADSTS90033)
    identity_sim.set_outage()

    report = mailbox.check()

    record = mailbox.record()
    assert report.verdict is Verdict.TRANSIENT
    assert (record.agent.status, record.health.check_state) == (S.VERIFIED, "retrying")
    assert record.health.reconnect_version == 0  # nobody is emailed about an outage
    # And the stored token is untouched (nothing was rotated)
    assert mailbox.stored_token() == mailbox.first_token.get_secret_value()


def test_a_check_racing_the_owners_reconnect_leaves_the_owners_new_token(
    mailbox: Mailbox, identity_sim: IdentitySimulator
) -> None:
    """Given a check redeeming the stored refresh token while the owner signs in again (the connect page seals
    a new token), when Microsoft's rotated token comes back to the check, then it is not sealed over the
    owner's: the owner's token stands and the check's verdict is stale."""
    owners: list[SecretStr] = []

    def owner_reconnects() -> None:
        token = mailbox.sign_in(MIA)
        mailbox.credentials.put(mailbox.agent.tenant_id, mailbox.agent.agent_id, token, purpose=REFRESH_TOKEN)
        owners.append(token)

    mailbox.oauth.during = owner_reconnects

    report = mailbox.check()

    assert report.outcome is Outcome.STALE
    assert mailbox.stored_token() == owners[0].get_secret_value()
