"""The verification workflow's steps (`onboarding.verification.steps.VerificationSteps`), called directly: the
real repositories and credential store; the Exchange simulator where a step talks to a server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from devstack.exchange_sim.scenarios import SCENARIOS_BY_NAME
from onboarding.agents.models import INTERNAL_ERROR, Agent, AgentStatus, Attr
from onboarding.agents.store import DynamoAgentRepository
from onboarding.connect.forms import ConnectView
from onboarding.core.credentials import KmsCredentialStore
from onboarding.core.errors import CredentialNotFoundError, InviteUsedError
from onboarding.exchange import ExchangeConfig
from onboarding.invites.delivery import resolve_invite
from onboarding.invites.mailer import Mailer
from onboarding.invites.store import DynamoInviteRepository
from onboarding.invites.tokens import token_hash
from onboarding.verification.steps import Outcome, TaskInput, VerificationSteps
from tests import lifecycle

S = AgentStatus


@pytest.fixture
def steps(
    repo: DynamoAgentRepository,
    invite_repo: DynamoInviteRepository,
    credentials: KmsCredentialStore,
    exchange_config: ExchangeConfig,
) -> VerificationSteps:
    return VerificationSteps(repo, invite_repo, credentials, exchange_config, max_failed_passwords=3)


@dataclass
class Connecting:
    """Puts agents where the connect page leaves them: connecting through their link at attempt 1, the
    password stored."""

    repo: DynamoAgentRepository
    invite_repo: DynamoInviteRepository
    credentials: KmsCredentialStore
    mailer: Mailer

    def agent(self, *, password: str, email: str = "ann@contoso.com", **attributes: Any) -> tuple[Agent, str]:
        """The agent and the token of its link."""
        invited = lifecycle.add(self.repo, email=email)
        token = lifecycle.send_invite(self.repo, self.invite_repo, self.mailer, invited)
        values = {Attr.ATTEMPT: 1, Attr.ROUNDS: 0, Attr.INVITE_HASH: token_hash(token), **attributes}
        agent = lifecycle.walk(
            self.repo, self.repo.get("demo", invited.agent_id), S.CONNECTING, set_attributes=values
        )
        self.credentials.put(agent.tenant_id, agent.agent_id, SecretStr(password))
        return agent, token


@pytest.fixture
def connecting(
    repo: DynamoAgentRepository,
    invite_repo: DynamoInviteRepository,
    credentials: KmsCredentialStore,
    mailer: Mailer,
) -> Connecting:
    return Connecting(repo, invite_repo, credentials, mailer)


def _task(agent: Agent, action: str, attempt: int = 1, **fields: Any) -> TaskInput:
    return TaskInput.model_validate(
        {
            "action": action,
            "tenantId": agent.tenant_id,
            "agentId": agent.agent_id,
            "attempt": attempt,
            **fields,
        }
    )


def test_a_step_of_an_older_attempt_is_stale_and_changes_nothing(
    steps: VerificationSteps, repo: DynamoAgentRepository, connecting: Connecting
) -> None:
    agent, _ = connecting.agent(password="pw")
    before = repo.get_record("demo", agent.agent_id)
    assert (
        steps.run(_task(agent, "record_failure", attempt=2, failure={"code": "auth_failed"})).outcome
        is Outcome.STALE
    )
    assert repo.get_record("demo", agent.agent_id) == before


def test_a_step_for_a_removed_agent_is_stale(
    steps: VerificationSteps, repo: DynamoAgentRepository, connecting: Connecting
) -> None:
    agent, _ = connecting.agent(password="pw")
    repo.delete("demo", agent.agent_id)
    assert steps.run(_task(agent, "request_settings", taskToken="t")).outcome is Outcome.STALE


def test_a_server_typed_by_the_owner_skips_autodiscovery(
    steps: VerificationSteps, repo: DynamoAgentRepository, connecting: Connecting
) -> None:
    agent, _ = connecting.agent(password="pw", **{Attr.SERVER: "mail.contoso.com"})
    assert steps.run(_task(agent, "autodiscover")).outcome is Outcome.MANUAL


def test_asking_for_settings_keeps_the_task_token_and_counts_the_round(
    steps: VerificationSteps, repo: DynamoAgentRepository, connecting: Connecting
) -> None:
    agent, _ = connecting.agent(password="pw")
    output = steps.run(_task(agent, "request_settings", taskToken="task-1", code="autodiscover_failed"))
    assert output.outcome is Outcome.NEEDS_SETTINGS
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert (record.agent.status, record.agent.status_reason) == (S.NEEDS_SETTINGS, "autodiscover_failed")
    assert (record.connection.task_token, record.connection.settings_rounds) == ("task-1", 1)


def test_a_wrong_password_fails_the_attempt_counts_against_the_link_and_forgets_the_password(
    steps: VerificationSteps,
    repo: DynamoAgentRepository,
    invite_repo: DynamoInviteRepository,
    credentials: KmsCredentialStore,
    connecting: Connecting,
) -> None:
    # Given an agent connecting through its link
    agent, token = connecting.agent(password="wrong")
    # When the workflow records an auth failure
    output = steps.run(_task(agent, "record_failure", failure={"code": "auth_failed"}))
    # Then the agent failed with that reason, the password is gone, and the link counted one wrong try
    assert (output.outcome, output.code) == (Outcome.RECORDED, "auth_failed")
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert (record.agent.status, record.agent.status_reason) == (S.FAILED, "auth_failed")
    with pytest.raises(CredentialNotFoundError):
        credentials.get("demo", agent.agent_id)
    invite, _ = resolve_invite(repo, invite_repo, token)
    assert invite.failed_attempts == 1


def test_an_error_the_state_machine_does_not_name_is_an_internal_error_without_the_cause(
    steps: VerificationSteps, repo: DynamoAgentRepository, connecting: Connecting
) -> None:
    """Timeouts are named by their own Catch (test_onboarding_faults); anything else is ours to fix."""
    agent, _ = connecting.agent(password="pw")
    failure = {"Error": "Lambda.Unknown", "Cause": "Traceback ... secret-looking text"}
    assert steps.run(_task(agent, "record_failure", failure=failure)).code == INTERNAL_ERROR
    assert repo.get("demo", agent.agent_id).status_reason == INTERNAL_ERROR


def test_verifying_a_mailbox_records_its_settings_and_uses_the_link_up(
    steps: VerificationSteps,
    repo: DynamoAgentRepository,
    invite_repo: DynamoInviteRepository,
    credentials: KmsCredentialStore,
    connecting: Connecting,
) -> None:
    # Given a mailbox the simulator serves, connecting through its link
    scenario = SCENARIOS_BY_NAME["autodiscover_domain"]
    username = {Attr.USERNAME: scenario.username} if scenario.username else {}
    agent, token = connecting.agent(password=scenario.password, email=scenario.email, **username)
    # When the workflow runs its steps
    assert steps.run(_task(agent, "autodiscover")).outcome is Outcome.FOUND
    assert steps.run(_task(agent, "verify")).outcome is Outcome.VERIFIED
    assert steps.run(_task(agent, "record_verified")).outcome is Outcome.RECORDED
    # Then the agent is verified with what was found, and its link is used up
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.agent.status is S.VERIFIED
    assert record.connection.ews_url is not None
    assert record.connection.ews_url.startswith("https://")
    assert record.connection.inbox_item_count == scenario.inbox_count
    with pytest.raises(InviteUsedError):
        resolve_invite(repo, invite_repo, token)


@pytest.mark.parametrize("step", ["autodiscover", "verify"])
def test_an_email_address_refused_as_login_tells_the_owner_the_login_the_server_named(
    step: str,
    steps: VerificationSteps,
    repo: DynamoAgentRepository,
    invite_repo: DynamoInviteRepository,
    connecting: Connecting,
) -> None:
    # Given maya, whose server (Windows domain MTCORP, unlike her email domain margiestravel.test) refuses her
    # email address as the login; she typed no username (autodiscover) or only the server (verify)
    scenario = SCENARIOS_BY_NAME["netbios_domain_hint"]
    server = {Attr.SERVER: scenario.server} if step == "verify" else {}
    agent, token = connecting.agent(password=scenario.password, email=scenario.email, **server)
    # When the workflow's step fails and the failure is recorded
    output = steps.run(_task(agent, step))
    assert (output.outcome, output.code) == (Outcome.FAILED, "auth_failed")
    steps.run(_task(agent, "record_failure", failure={"code": output.code}))
    # Then the agent keeps the login to suggest, and the owner's message says either could be the cause
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.connection.login_hint == "MTCORP\\maya"
    view = ConnectView(token=token, token_hash=token_hash(token), record=record)
    assert f"password for {scenario.email} with your email address as the login" in view.message
    assert (
        "Either the password is wrong, or the server wants its Windows sign-in, MTCORP\\maya" in view.message
    )
    assert view.suggested_login == "MTCORP\\maya"
    # And her right password did not count towards the link's lock
    invite, _ = resolve_invite(repo, invite_repo, token)
    assert invite.failed_attempts == 0
    # And the IT admin's trace names it too
    assert record.connection.exchange_trace is not None
    assert "suggested login MTCORP\\\\maya" in record.connection.exchange_trace  # JSON escapes the backslash


def test_a_later_verdict_without_a_hint_drops_the_earlier_one(
    steps: VerificationSteps, repo: DynamoAgentRepository, connecting: Connecting
) -> None:
    # Given an agent that kept a login hint from an earlier verdict, now trying a Windows login that is refused
    scenario = SCENARIOS_BY_NAME["wrong_password"]
    agent, _ = connecting.agent(
        password=scenario.password,
        email=scenario.email,
        **{Attr.SERVER: scenario.server, Attr.USERNAME: scenario.username, Attr.LOGIN_HINT: "CONTOSO\\alice"},
    )
    # When verification fails again (a DOMAIN\\user login refused: nothing to suggest)
    assert steps.run(_task(agent, "verify")).code == "auth_failed"
    # Then no stale suggestion is left for the page
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.connection.login_hint is None
    view = ConnectView(token="t", token_hash="h", record=record)
    assert view.suggested_login is None
    assert "Windows sign-in" not in view.message


def _try_again(repo: DynamoAgentRepository, agent: Agent, attempt: int, **attributes: Any) -> Agent:
    """The owner tries again through the same link: the agent connecting at the next attempt."""
    return repo.transition(
        "demo", agent.agent_id, S.CONNECTING, set_attributes={Attr.ATTEMPT: attempt, **attributes}
    )


def test_a_refusal_in_doubt_is_not_counted_the_first_time_on_a_link_and_counted_after(
    steps: VerificationSteps,
    repo: DynamoAgentRepository,
    invite_repo: DynamoInviteRepository,
    connecting: Connecting,
) -> None:
    # Given the owner signed in with the email address and the server, which named its Windows domain
    # CONTOSO, refused it: a wrong password, or a server that takes only CONTOSO\ann (nobody can tell)
    doubt = {Attr.LOGIN_HINT: "CONTOSO\\ann"}
    agent, token = connecting.agent(password="wrong", **doubt)
    # When the failure is recorded, and the step is retried (the write landed, the answer was lost)
    for _ in range(2):
        steps.run(_task(agent, "record_failure", failure={"code": "auth_failed"}))
    # Then it did not count towards the lock
    assert resolve_invite(repo, invite_repo, token)[0].failed_attempts == 0
    # When the owner, told about CONTOSO\ann, still signs in with the address and is refused again
    agent = _try_again(repo, agent, 2, **doubt)
    steps.run(_task(agent, "record_failure", attempt=2, failure={"code": "auth_failed"}))
    # Then that one counts, as does every later one
    assert resolve_invite(repo, invite_repo, token)[0].failed_attempts == 1
    agent = _try_again(repo, agent, 3, **doubt)
    steps.run(_task(agent, "record_failure", attempt=3, failure={"code": "auth_failed"}))
    assert resolve_invite(repo, invite_repo, token)[0].failed_attempts == 2


@pytest.mark.parametrize("hint", ["DOMAIN\\ann", None])
def test_a_refusal_without_a_domain_named_by_the_server_counts_at_once(
    steps: VerificationSteps,
    repo: DynamoAgentRepository,
    invite_repo: DynamoInviteRepository,
    connecting: Connecting,
    hint: str | None,
) -> None:
    # Given a refusal where the server named no Windows domain (placeholder hint), or a DOMAIN\user login
    agent, token = connecting.agent(password="wrong", **({Attr.LOGIN_HINT: hint} if hint else {}))
    # When it is recorded, Then it is a wrong password like any other
    steps.run(_task(agent, "record_failure", failure={"code": "auth_failed"}))
    assert resolve_invite(repo, invite_repo, token)[0].failed_attempts == 1


def test_a_refusal_in_doubt_on_the_settings_form_is_excused_once_too(
    steps: VerificationSteps,
    repo: DynamoAgentRepository,
    invite_repo: DynamoInviteRepository,
    connecting: Connecting,
) -> None:
    # Given alice on the settings form (a first round of settings) with a wrong password, her address as the
    # login, and her server, which names its Windows domain CONTOSO
    scenario = SCENARIOS_BY_NAME["wrong_password"]
    agent, token = connecting.agent(
        password=scenario.password, email=scenario.email, **{Attr.SERVER: scenario.server, Attr.ROUNDS: 1}
    )
    # When verification is refused, Then the settings are asked for again and the try is not counted
    output = steps.run(_task(agent, "verify"))
    assert (output.outcome, output.code) == (Outcome.NEEDS_SETTINGS, "auth_failed")
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.connection.login_hint == "CONTOSO\\alice"
    assert resolve_invite(repo, invite_repo, token)[0].failed_attempts == 0
    # And the next round refused the same way counts
    repo.update_attributes("demo", agent.agent_id, {Attr.ROUNDS: 2}, expected_status=S.CONNECTING)
    assert steps.run(_task(agent, "verify")).code == "auth_failed"
    assert resolve_invite(repo, invite_repo, token)[0].failed_attempts == 1
