"""The connect page's use cases (`onboarding.connect.forms.ConnectService`), called directly: the real
repositories and credential store, moto's Step Functions (which records executions)."""

from __future__ import annotations

from typing import Any

import pytest

from onboarding.agents.models import SETTINGS_TIMEOUT, AgentStatus
from onboarding.agents.store import DynamoAgentRepository
from onboarding.connect.forms import ConnectService, CredentialsForm, SettingsForm
from onboarding.core.credentials import KmsCredentialStore
from onboarding.core.errors import CredentialNotFoundError, NotNowError, WrongMailboxError
from onboarding.invites.tokens import token_hash
from tests import lifecycle
from tests.layer.conftest import EMAIL

S = AgentStatus


def _form(**fields: str) -> CredentialsForm:
    return CredentialsForm.model_validate({"email": EMAIL, "password": "pw", **fields})


def test_a_view_shows_the_invited_mailbox_and_changes_nothing(service: ConnectService, token: str) -> None:
    view = service.view(token)
    # (added without an inviter name or a display-name claim: no one is named, never the tenant id "demo")
    assert (view.status, view.email, view.tenant_name, view.reason) == (S.INVITED, EMAIL, None, None)
    assert view.token_hash == token_hash(token)
    assert service.view(token).record == view.record


def test_credentials_start_the_first_attempt_with_references_only(
    service: ConnectService,
    token: str,
    repo: DynamoAgentRepository,
    credentials: KmsCredentialStore,
    sfn: Any,
    state_machine_arn: str,
) -> None:
    # Given an invited mailbox, When its owner submits the credentials with a server
    view = service.submit_credentials(token, _form(server="https://mail.contoso.com/owa/"))
    # Then the agent is connecting at attempt 1, with the server and the invite it came through
    assert view.status is S.CONNECTING
    connection = view.record.connection
    assert (connection.connect_attempt, connection.settings_rounds) == (1, 0)
    assert (connection.conn_server, connection.conn_username) == ("mail.contoso.com", None)
    assert connection.connect_invite_hash == token_hash(token)
    # And the password is in the credential store, the workflow started with references only
    agent_id = view.record.agent.agent_id
    assert credentials.get("demo", agent_id).get_secret_value() == "pw"
    (execution,) = sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]
    assert execution["name"] == f"{agent_id}-1"
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    assert "pw" not in described["input"]
    assert '"attempt": 1' in described["input"]


def test_credentials_for_another_mailbox_are_refused_and_change_nothing(
    service: ConnectService, token: str, sfn: Any, state_machine_arn: str
) -> None:
    before = service.view(token).record
    with pytest.raises(WrongMailboxError):
        service.submit_credentials(
            token, CredentialsForm.model_validate({"email": "bob@contoso.com", "password": "pw"})
        )
    assert service.view(token).record == before
    assert sfn.list_executions(stateMachineArn=state_machine_arn)["executions"] == []


def test_credentials_while_a_check_runs_are_not_now(
    service: ConnectService, token: str, repo: DynamoAgentRepository
) -> None:
    service.submit_credentials(token, _form())
    with pytest.raises(NotNowError):
        service.submit_credentials(token, _form())
    assert service.view(token).record.connection.connect_attempt == 1


def test_settings_nobody_waits_for_are_kept_and_the_agent_fails_with_a_timeout(
    service: ConnectService,
    token: str,
    repo: DynamoAgentRepository,
    credentials: KmsCredentialStore,
) -> None:
    # Given a mailbox asked for settings, with no workflow waiting for them (no task token kept)
    agent = repo.get(*_ids(service, token))
    lifecycle.walk(repo, agent, S.NEEDS_SETTINGS, reason="autodiscover_failed")
    # When the owner sends the settings
    form = SettingsForm.model_validate(
        {"server": "mail.contoso.com", "username": "CONTOSO\\ann", "password": "new"}
    )
    view = service.submit_settings(token, form)
    # Then they are kept (not the password: nothing will read it), and the page says the wait is over
    assert (view.status, view.reason) == (S.FAILED, SETTINGS_TIMEOUT)
    connection = view.record.connection
    assert (connection.conn_server, connection.conn_username, connection.task_token) == (
        "mail.contoso.com",
        "CONTOSO\\ann",
        None,
    )
    with pytest.raises(CredentialNotFoundError):
        credentials.get(*_ids(service, token))


def test_settings_when_none_were_asked_for_are_not_now(service: ConnectService, token: str) -> None:
    with pytest.raises(NotNowError):
        service.submit_settings(token, SettingsForm.model_validate({"server": "mail.contoso.com"}))


def _ids(service: ConnectService, token: str) -> tuple[str, str]:
    agent = service.view(token).record.agent
    return agent.tenant_id, agent.agent_id
