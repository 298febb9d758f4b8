"""CheckMailboxFunction, fed by ChecksQueue as its event source mapping feeds it (batches, partial batch
responses, the template's redrive to the dead-letter queue), under its own IAM policy: Exchange mailboxes
against the Exchange simulator, Microsoft 365 mailboxes against the identity + Graph simulator, with the table
from template.yaml, the credential store and its KMS key under moto."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from devstack.exchange_sim import ExchangeSimulator
from devstack.identity_sim import IdentitySimulator
from functions.check_mailbox import app
from onboarding import deps
from onboarding.agents.models import Agent, AgentStatus, Attr
from onboarding.agents.schedule import scheduled_attributes
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core.credentials import KmsCredentialStore
from onboarding.exchange import ExchangeContext, discover
from onboarding.health.models import CheckMessage
from onboarding.health.probes import REFRESH_TOKEN
from onboarding.m365.oauth import OAuthClient
from tests import lifecycle
from tests.checks_queue import MAX_RECEIVES, ChecksQueue, create_checks_queues
from tests.conftest import CREDENTIALS_TABLE, LambdaContext
from tests.m365_fixtures import REDIRECT_URI, Person, point_functions_at, production_config

S = AgentStatus
LONG_AGO = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
BEA, BEA_PASSWORD = "bea@fabrikam.test", "Bea-Pass-4"
MIA = "mia@m365.test"


def handler(event: dict[str, Any]) -> dict[str, Any]:
    return app.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]


@pytest.fixture
def queue(moto_aws: None) -> ChecksQueue:
    return create_checks_queues()


@pytest.fixture
def credentials(moto_aws: None, key_arn: str) -> KmsCredentialStore:
    return deps.credential_store(CREDENTIALS_TABLE, key_arn)


@pytest.fixture
def exchange_env(exchange_sim: ExchangeSimulator, monkeypatch: pytest.MonkeyPatch) -> ExchangeSimulator:
    """What the local stack sets for the checker: loopback allowed (the simulator), its CA trusted."""
    monkeypatch.setenv("EXCHANGE_ALLOW_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("EXCHANGE_CA_BUNDLE", exchange_sim.ca_bundle)
    deps.reset()
    return exchange_sim


def _message(agent: Agent, cause: str = "schedule") -> str:
    return CheckMessage(tenant_id=agent.tenant_id, agent_id=agent.agent_id, cause=cause).body()  # type: ignore[arg-type]


def _connected_exchange(
    repo: DynamoAgentRepository,
    credentials: KmsCredentialStore,
    sim: ExchangeSimulator,
    email: str,
    password: str,
) -> Agent:
    """An Exchange agent as onboarding leaves it: the settings discovery found, the password sealed."""
    from onboarding.exchange import ExchangeConfig

    config = ExchangeConfig(allow_networks=("127.0.0.0/8",), ca_bundle=sim.ca_bundle)
    found = discover(email, password, ExchangeContext(config=config))
    agent = lifecycle.add(repo, email=email)
    agent = lifecycle.walk(
        repo,
        agent,
        S.VERIFIED,
        set_attributes={
            **scheduled_attributes(agent.agent_id, LONG_AGO),
            Attr.ATTEMPT: 1,
            Attr.VERIFY_METHOD: "ews",
            Attr.EWS_URL: found.ews_url,
            Attr.AUTH_TYPE: found.auth_type,
            Attr.EXCHANGE_USERNAME: found.username,
            **({Attr.SERVER_BUILD: found.server_build} if found.server_build else {}),
        },
    )
    credentials.put(agent.tenant_id, agent.agent_id, SecretStr(password))
    sim.reset_observations()
    return agent


def _status(repo: DynamoAgentRepository, agent: Agent) -> tuple[AgentStatus, str | None]:
    record = repo.get_record(agent.tenant_id, agent.agent_id)
    assert record is not None
    return record.agent.status, record.health.check_state


def test_a_batch_of_exchange_checks_records_each_verdict(
    repo: DynamoAgentRepository,
    credentials: KmsCredentialStore,
    queue: ChecksQueue,
    exchange_env: ExchangeSimulator,
) -> None:
    # Given two connected Exchange mailboxes, one whose owner changed the password since
    healthy = _connected_exchange(repo, credentials, exchange_env, BEA, BEA_PASSWORD)
    changed = _connected_exchange(repo, credentials, exchange_env, "alice@contoso.test", "Alice-Pass-1")
    exchange_env.set_password("alice@contoso.test", "Alice-New-Pass-2")
    queue.send(_message(healthy))
    queue.send(_message(changed, cause="manual"))

    # When the queue hands both to the checker in one batch
    delivery = queue.deliver(handler)

    # Then no message is retried; one mailbox keeps its tick, the other needs a reconnect
    assert (len(delivery.records), delivery.failed) == (2, set())
    assert _status(repo, healthy) == (S.VERIFIED, "ok")
    assert _status(repo, changed) == (S.NEEDS_RECONNECT, "refused")
    assert queue.bodies() == []


def test_a_message_that_is_not_a_check_is_retried_then_left_in_the_dead_letter_queue(
    repo: DynamoAgentRepository,
    credentials: KmsCredentialStore,
    queue: ChecksQueue,
    exchange_env: ExchangeSimulator,
) -> None:
    # Given a poison message in the queue beside a good one
    agent = _connected_exchange(repo, credentials, exchange_env, BEA, BEA_PASSWORD)
    queue.send('{"tenantId": "demo", "agentId": "not an id", "cause": "because"}')
    queue.send(_message(agent))

    # When the queue keeps delivering (the template's maxReceiveCount times, and once more)
    deliveries = [queue.deliver(handler) for _ in range(MAX_RECEIVES + 1)]

    # Then the good message is checked once and deleted; the poison one is named in batchItemFailures on every
    # delivery, then the redrive moves it to the dead-letter queue
    first = deliveries[0]
    poison = {r["messageId"] for r in first.records if "not an id" in r["body"]}
    assert len(first.records) == 2
    assert first.failed == poison
    assert all(d.failed == poison for d in deliveries[1:MAX_RECEIVES])
    assert deliveries[MAX_RECEIVES].records == []
    assert _status(repo, agent) == (S.VERIFIED, "ok")
    assert [b["agentId"] for b in queue.bodies(queue.dlq_url)] == ["not an id"]


def test_a_check_that_fails_unexpectedly_is_retried_alone(
    repo: DynamoAgentRepository,
    credentials: KmsCredentialStore,
    queue: ChecksQueue,
    exchange_env: ExchangeSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two due checks, and DynamoDB failing for one agent's record (a throttled read, say)
    good = _connected_exchange(repo, credentials, exchange_env, BEA, BEA_PASSWORD)
    bad = _connected_exchange(repo, credentials, exchange_env, "alice@contoso.test", "Alice-Pass-1")
    checker = app.deps()
    real = checker.repo.get_record

    def flaky(tenant_id: str, agent_id: str) -> Any:
        if agent_id == bad.agent_id:
            raise TimeoutError("DynamoDB did not answer")
        return real(tenant_id, agent_id)

    monkeypatch.setattr(checker.repo, "get_record", flaky)
    queue.send(_message(good))
    queue.send(_message(bad))

    # When the batch is delivered
    delivery = queue.deliver(handler)

    # Then only the failed one is reported for a retry (partial batch response), and it is back in the queue
    (failed,) = delivery.failed
    assert next(r for r in delivery.records if r["messageId"] == failed)["body"] == _message(bad)
    assert _status(repo, good) == (S.VERIFIED, "ok")
    assert [b["agentId"] for b in queue.bodies()] == [bad.agent_id]


def _connected_m365(
    repo: DynamoAgentRepository, credentials: KmsCredentialStore, sim: IdentitySimulator
) -> tuple[Agent, SecretStr]:
    """A Microsoft 365 agent as onboarding leaves it: Sign in with Microsoft, its refresh token sealed."""
    config = production_config(sim, "arn:aws:secretsmanager:us-east-1:123456789012:secret:x")
    oauth = OAuthClient(config, lambda: sim.client_secret)
    flow = oauth.start(login_hint=MIA, redirect_uri=REDIRECT_URI)
    token = oauth.redeem(flow, Person(sim).sign_in(flow["auth_uri"], MIA)).refresh_token
    agent = lifecycle.add(repo, email=MIA)
    agent = lifecycle.walk(
        repo,
        agent,
        S.VERIFIED,
        set_attributes={
            **scheduled_attributes(agent.agent_id, LONG_AGO),
            Attr.ATTEMPT: 1,
            Attr.VERIFY_METHOD: "graph",
        },
    )
    credentials.put(agent.tenant_id, agent.agent_id, token, purpose=REFRESH_TOKEN)
    return agent, token


def test_a_microsoft_365_mailbox_is_checked_and_its_rotated_token_sealed(
    repo: DynamoAgentRepository,
    credentials: KmsCredentialStore,
    queue: ChecksQueue,
    identity_sim: IdentitySimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a Microsoft 365 agent connected with Sign in with Microsoft, and the checker configured for the
    # simulator (the Entra app's secret in Secrets Manager)
    point_functions_at(identity_sim, monkeypatch)
    agent, token = _connected_m365(repo, credentials, identity_sim)
    queue.send(_message(agent))

    # When the checker takes the message
    delivery = queue.deliver(handler)

    # Then the mailbox keeps its tick and the rotated refresh token replaced the one stored
    assert delivery.failed == set()
    assert _status(repo, agent) == (S.VERIFIED, "ok")
    stored = credentials.get(agent.tenant_id, agent.agent_id, purpose=REFRESH_TOKEN)
    assert stored.get_secret_value() != token.get_secret_value()


def test_a_revoked_microsoft_365_token_needs_a_reconnect(
    repo: DynamoAgentRepository,
    credentials: KmsCredentialStore,
    queue: ChecksQueue,
    identity_sim: IdentitySimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the owner's refresh tokens revoked (a password reset) after they connected
    point_functions_at(identity_sim, monkeypatch)
    agent, _ = _connected_m365(repo, credentials, identity_sim)
    identity_sim.revoke_refresh_tokens(MIA)
    queue.send(_message(agent))

    # When the checker takes the message, Then the agent needs a reconnect (and the message is done)
    delivery = queue.deliver(handler)

    assert delivery.failed == set()
    assert _status(repo, agent) == (S.NEEDS_RECONNECT, "refused")
