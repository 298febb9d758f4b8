"""No half-done onboarding: a fault at each point between "connecting" and a recorded verdict (and in the
invite sender) ends in a defined state, with no stored password left that nothing can use.

Faults are injected where AWS would raise them (the real repositories and stores under moto, one
collaborator made to fail)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from devstack import template as tpl
from onboarding import deps
from onboarding.agents.models import (
    DISCOVERY_TIMEOUT,
    INTERNAL_ERROR,
    SETTINGS_TIMEOUT,
    VERIFICATION_TIMEOUT,
    AgentStatus,
    Attr,
)
from onboarding.agents.start_watch import START_MARGIN, StartWatch
from onboarding.agents.store import DynamoAgentRepository
from onboarding.connect.forms import ConnectService, CredentialsForm, reason_message
from onboarding.core import aws
from onboarding.core.credentials import KmsCredentialStore
from onboarding.core.errors import EmailNotSentError, IllegalTransitionError, InviteDeliveryFailedError
from onboarding.exchange import ExchangeConfig
from onboarding.invites import delivery as invites
from onboarding.invites.mailer import Mailer
from onboarding.invites.models import DeliveryOutcome, InviteRequested
from onboarding.invites.store import DynamoInviteRepository
from onboarding.verification.steps import Outcome, TaskInput, VerificationSteps
from tests import lifecycle
from tests.conftest import CREDENTIALS_TABLE, ROOT, TABLE_NAME, create_resources, stored_secrets
from tests.invite_helpers import SENDER, emails, throttling, verify_sender
from tests.layer.conftest import EMAIL

S = AgentStatus
ASL = Path(__file__).resolve().parents[2] / "statemachine" / "verify_mailbox.asl.json"


@pytest.fixture
def steps(
    repo: DynamoAgentRepository, invite_repo: DynamoInviteRepository, credentials: KmsCredentialStore
) -> VerificationSteps:
    return VerificationSteps(repo, invite_repo, credentials, ExchangeConfig(), max_failed_passwords=3)


def _form() -> CredentialsForm:
    return CredentialsForm.model_validate({"email": EMAIL, "password": "Pa55-word"})


def _task(agent_id: str, action: str, attempt: int = 1, **fields: Any) -> TaskInput:
    return TaskInput.model_validate(
        {"action": action, "tenantId": "demo", "agentId": agent_id, "attempt": attempt, **fields}
    )


class _Failing:
    """Wraps a client or store: `method` raises `error` (once, or always)."""

    def __init__(self, real: Any, method: str, error: BaseException, *, times: int = 10**6) -> None:
        self._real, self._method, self._error, self._times = real, method, error, times

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if name != self._method or self._times <= 0:
            return attribute

        def fail(*args: Any, **kwargs: Any) -> Any:
            self._times -= 1
            raise self._error

        return fail


# -- between "connecting" and the workflow start ------------------------------------------------------
@pytest.mark.parametrize(
    ("where", "error"),
    [
        pytest.param(
            "credentials.put", EndpointConnectionError(endpoint_url="https://kms"), id="kms-unreachable"
        ),
        pytest.param(
            "credentials.put", ReadTimeoutError(endpoint_url="https://dynamodb"), id="store-timeout"
        ),
        pytest.param(
            "sfn.start_execution", ReadTimeoutError(endpoint_url="https://states"), id="start-timeout"
        ),
        pytest.param(
            "sfn.start_execution",
            ClientError({"Error": {"Code": "ExecutionLimitExceeded", "Message": "x"}}, "StartExecution"),
            id="start-refused",
        ),
        pytest.param("sfn.start_execution", RuntimeError("a bug"), id="start-bug"),
    ],
)
def test_any_failure_before_the_workflow_starts_ends_failed_with_no_password_kept(
    service: ConnectService, token: str, repo: DynamoAgentRepository, where: str, error: BaseException
) -> None:
    # Given the store or Step Functions failing with this error
    owner, method = where.split(".")
    setattr(service, owner, _Failing(getattr(service, owner), method, error))
    # When the owner submits the credentials
    view = service.submit_credentials(token, _form())
    # Then the agent is failed (internal_error), the page can say so and offer the form, no password stays
    assert (view.status, view.reason) == (S.FAILED, INTERNAL_ERROR)
    assert "on our side" in view.message
    assert stored_secrets(view.record.agent.agent_id) == []


def test_after_a_failed_start_the_owner_can_try_again(
    service: ConnectService, token: str, sfn: Any, state_machine_arn: str
) -> None:
    real = service.sfn
    service.sfn = _Failing(real, "start_execution", ReadTimeoutError(endpoint_url="https://states"), times=1)
    first = service.submit_credentials(token, _form())
    second = service.submit_credentials(token, _form())
    assert (first.status, second.status) == (S.FAILED, S.CONNECTING)
    assert second.record.connection.connect_attempt == 2
    assert len(stored_secrets(second.record.agent.agent_id)) == 1


# -- the connect function killed between "connecting" and the workflow start ---------------------------
KILLED_STARTER = """
import os, signal, sys
from onboarding import deps
from onboarding.core import aws
from onboarding.connect.forms import ConnectService, CredentialsForm


class KilledAtStart:  # Step Functions as the dying function meets it: Lambda kills it before the call
    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def start_execution(self, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)  # no except, no finally, no atexit


table, credentials_table, state_machine_arn, token, email = sys.argv[1:]
service = ConnectService(
    deps.agent_repository(table),
    deps.invite_repository(table),
    deps.credential_store(credentials_table, os.environ["CREDENTIALS_KEY_ARN"]),
    KilledAtStart(aws.client("stepfunctions")),
    state_machine_arn=state_machine_arn,
    settings_timeout_seconds=600,
    remaining_seconds=lambda: 10.0,
)
service.submit_credentials(token, CredentialsForm.model_validate({"email": email, "password": "Pa55-word"}))
print("still alive")
"""


@pytest.fixture
def moto_server(aws_environment: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto in server mode on a free port of 127.0.0.1, with the template's tables and key: shared by this
    process and the ones it starts (AWS_ENDPOINT_URL)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    deps.reset()
    try:
        create_resources(monkeypatch)
        yield f"http://{host}:{port}"
    finally:
        deps.reset()
        server.stop()


def test_a_connect_function_killed_before_the_workflow_starts_ends_failed_and_the_owner_can_retry(
    moto_server: str,
) -> None:
    repo, invite_repo = deps.agent_repository(TABLE_NAME), deps.invite_repository(TABLE_NAME)
    credentials = deps.credential_store(CREDENTIALS_TABLE, os.environ["CREDENTIALS_KEY_ARN"])
    sfn = aws.client("stepfunctions")
    arn = tpl.create_state_machine(
        sfn,
        "VerifyMailboxStateMachine",
        {"VerifyMailboxFunction.Arn": tpl.function_arn("test-VerifyMailboxFunction")},
        name="verify-mailbox",
    )
    verify_sender()
    mailer = Mailer(SENDER, aws.client("sesv2"), sleep=lambda _: None)
    token = lifecycle.send_invite(repo, invite_repo, mailer, lifecycle.add(repo, email=EMAIL))
    # Given the connect function killed (SIGKILL: no handler runs) after the `connecting` write and the
    # sealed password, before it starts the workflow
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_STARTER, TABLE_NAME, CREDENTIALS_TABLE, arn, token, EMAIL],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'common'}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "still alive" not in killed.stdout
    page = ConnectService(
        repo, invite_repo, credentials, sfn, state_machine_arn=arn, settings_timeout_seconds=600
    )
    left = page.view(token, for_status=True)
    agent_id = left.record.agent.agent_id
    assert left.status is S.CONNECTING
    assert len(stored_secrets(agent_id)) == 1
    assert sfn.list_executions(stateMachineArn=arn)["executions"] == []
    deadline = datetime.fromisoformat(str(left.record.connection.start_deadline).replace("Z", "+00:00"))
    # When the status page is read once the deadline has passed (its function is dead by then)
    page.clock = lambda: deadline + timedelta(milliseconds=1)
    after = page.view(token, for_status=True)
    # Then the agent is failed (internal_error), its password deleted, the page says so
    assert (after.status, after.reason) == (S.FAILED, INTERNAL_ERROR)
    assert "on our side" in after.message
    assert stored_secrets(agent_id) == []
    assert after.record.connection.start_deadline is None
    # And the owner retries with the same link, no try spent on our failure
    assert after.failed_passwords == 0
    retried = page.submit_credentials(token, _form())
    assert (retried.status, retried.record.connection.connect_attempt) == (S.CONNECTING, 2)
    (execution,) = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert execution["name"] == f"{agent_id}-2"
    assert retried.record.connection.start_deadline is None  # started: nothing left to watch
    assert len(stored_secrets(agent_id)) == 1


class _Killed(BaseException):
    """A kill in-process: no `except Exception` catches it, and the code in between has no `finally`."""


class _DiesAtStart:
    def __init__(self, real: Any) -> None:
        self.real, self.described = real, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def start_execution(self, **_: Any) -> Any:
        raise _Killed

    def describe_execution(self, **kwargs: Any) -> Any:
        self.described += 1
        return self.real.describe_execution(**kwargs)


def _killed_at_start(service: ConnectService, token: str) -> _DiesAtStart:
    service.sfn = dying = _DiesAtStart(service.sfn)
    with pytest.raises(_Killed):
        service.submit_credentials(token, _form())
    return dying


def _past_deadline(service: ConnectService, token: str) -> None:
    deadline = service.view(token, for_status=True).record.connection.start_deadline
    assert deadline is not None
    at = datetime.fromisoformat(deadline.replace("Z", "+00:00")) + timedelta(milliseconds=1)
    service.clock = lambda: at


def test_the_start_deadline_is_the_starters_remaining_time_and_a_margin(
    service: ConnectService, token: str
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    service.clock, service.remaining_seconds = (lambda: now), (lambda: 9.5)
    _killed_at_start(service, token)
    deadline = service.view(token, for_status=True).record.connection.start_deadline
    assert deadline == "2026-01-01T00:01:09.500Z"
    assert timedelta(seconds=60) == START_MARGIN


def test_before_its_deadline_a_start_is_left_alone_and_step_functions_not_asked(
    service: ConnectService, token: str
) -> None:
    dying = _killed_at_start(service, token)
    view = service.view(token, for_status=True)
    assert view.status is S.CONNECTING
    assert dying.described == 0
    assert len(stored_secrets(view.record.agent.agent_id)) == 1


def test_a_workflow_started_before_the_kill_is_left_running_and_its_deadline_cleared(
    service: ConnectService, token: str, repo: DynamoAgentRepository
) -> None:
    # Given the function died after starting the workflow, before removing the deadline
    view = service.submit_credentials(token, _form())
    agent_id = view.record.agent.agent_id
    past = "2020-01-01T00:00:00.000Z"
    repo.update_attributes("demo", agent_id, {Attr.START_DEADLINE: past}, expected_status=S.CONNECTING)
    # When it is read past the deadline, Then it stays connecting with its password; the deadline is gone
    after = service.view(token, for_status=True)
    assert after.status is S.CONNECTING
    assert after.record.connection.start_deadline is None
    assert len(stored_secrets(agent_id)) == 1


def test_when_step_functions_cannot_say_the_agent_is_left_for_the_next_read(
    service: ConnectService, token: str
) -> None:
    _killed_at_start(service, token)
    _past_deadline(service, token)
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "x"}}, "DescribeExecution")
    service.sfn = _Failing(service.sfn, "describe_execution", throttled, times=1)
    first = service.view(token, for_status=True)
    assert first.status is S.CONNECTING
    assert len(stored_secrets(first.record.agent.agent_id)) == 1
    second = service.view(token, for_status=True)
    assert (second.status, second.reason) == (S.FAILED, INTERNAL_ERROR)
    assert stored_secrets(first.record.agent.agent_id) == []


def test_the_dashboard_reading_or_resending_settles_a_dead_start(
    service: ConnectService, token: str, repo: DynamoAgentRepository, credentials: KmsCredentialStore
) -> None:
    from onboarding.agents import manage as agents

    _killed_at_start(service, token)
    _past_deadline(service, token)
    agent_id = repo.list("demo", status=None, limit=1, next_token=None).items[0].agent_id
    watch = StartWatch(repo, credentials, service.sfn, service.state_machine_arn, clock=service.clock)
    # Without the watch the read says connecting, and a resend is refused
    assert agents.get_agent(repo, "demo", agent_id).status is S.CONNECTING
    with pytest.raises(IllegalTransitionError):
        invites.request_invite(repo, "demo", agent_id)
    # With it, the read settles the dead start, and the resend goes through
    assert agents.get_agent(repo, "demo", agent_id, watch).status is S.FAILED
    assert stored_secrets(agent_id) == []
    assert invites.request_invite(repo, "demo", agent_id, watch).status is S.INVITE_PENDING


# -- a DELETE racing the connect --------------------------------------------------------------------
def test_an_agent_removed_while_connecting_leaves_no_password(
    service: ConnectService, token: str, repo: DynamoAgentRepository, steps: VerificationSteps
) -> None:
    # Given the dashboard removed the agent after the connect page stored the password and started the
    # workflow (the removal's own secret deletion ran before the password was written)
    view = service.submit_credentials(token, _form())
    agent_id = view.record.agent.agent_id
    repo.delete("demo", agent_id)
    assert len(stored_secrets(agent_id)) == 1
    # When the workflow's first step runs, Then it stops and deletes what nothing can use any more
    assert steps.run(_task(agent_id, "autodiscover")).outcome is Outcome.STALE
    assert stored_secrets(agent_id) == []


# -- settings posted after the wait ended -------------------------------------------------------------
def test_settings_with_a_password_after_the_wait_ended_keep_no_password(
    service: ConnectService, token: str, repo: DynamoAgentRepository, credentials: KmsCredentialStore
) -> None:
    from onboarding.connect.forms import SettingsForm

    view = service.submit_credentials(token, _form())
    agent = view.record.agent
    credentials.delete("demo", agent.agent_id)  # the workflow ended (settings timeout) and deleted it
    lifecycle.walk(repo, repo.get("demo", agent.agent_id), S.NEEDS_SETTINGS)
    form = SettingsForm.model_validate({"server": "mail.contoso.com", "password": "N3w-pass"})
    after = service.submit_settings(token, form)
    assert (after.status, after.reason) == (S.FAILED, SETTINGS_TIMEOUT)
    assert stored_secrets(agent.agent_id) == []


# -- Record Failure ------------------------------------------------------------------------------
def test_a_retried_record_failure_counts_the_wrong_password_once(
    service: ConnectService,
    token: str,
    steps: VerificationSteps,
    invite_repo: DynamoInviteRepository,
    repo: DynamoAgentRepository,
) -> None:
    # Given an attempt whose password was wrong
    agent_id = service.submit_credentials(token, _form()).record.agent.agent_id
    task = _task(agent_id, "record_failure", failure={"code": "auth_failed"})
    # When Step Functions runs Record Failure twice (the first answer was lost, the Retry ran it again)
    first, second = steps.run(task), steps.run(task)
    # Then both say recorded, the link counted one wrong try, the agent is failed and holds no password
    assert (first.outcome, second.outcome) == (Outcome.RECORDED, Outcome.RECORDED)
    invite, _ = invites.resolve_invite(repo, invite_repo, token)
    assert invite.failed_attempts == 1
    assert repo.get("demo", agent_id).status_reason == "auth_failed"
    assert stored_secrets(agent_id) == []


def test_the_count_failing_midway_is_retried_without_counting_twice(
    service: ConnectService,
    token: str,
    steps: VerificationSteps,
    invite_repo: DynamoInviteRepository,
    repo: DynamoAgentRepository,
) -> None:
    """The count landed, then the agent write failed: the retry finishes the job and counts nothing more."""
    agent_id = service.submit_credentials(token, _form()).record.agent.agent_id
    task = _task(agent_id, "record_failure", failure={"code": "auth_failed"})
    real_repo = steps.repo
    steps.repo = _Failing(real_repo, "transition", ReadTimeoutError(endpoint_url="https://dynamodb"), times=1)
    with pytest.raises(ReadTimeoutError):
        steps.run(task)
    assert steps.run(task).outcome is Outcome.RECORDED
    invite, _ = invites.resolve_invite(repo, invite_repo, token)
    assert invite.failed_attempts == 1
    assert repo.get("demo", agent_id).status is S.FAILED
    assert stored_secrets(agent_id) == []


def test_when_record_failure_cannot_write_the_last_resort_deletes_the_password(
    service: ConnectService, token: str, steps: VerificationSteps
) -> None:
    agent_id = service.submit_credentials(token, _form()).record.agent.agent_id
    steps.repo = _Failing(steps.repo, "transition", ReadTimeoutError(endpoint_url="https://dynamodb"))
    with pytest.raises(ReadTimeoutError):
        steps.run(_task(agent_id, "record_failure", failure={"code": "unreachable"}))
    assert steps.run(_task(agent_id, "discard_credentials")).outcome is Outcome.RECORDED
    assert stored_secrets(agent_id) == []


def test_record_failure_has_its_own_catch_that_discards_the_password_and_fails_loudly() -> None:
    states = json.loads(ASL.read_text())["States"]
    (catch,) = states["Record Failure"]["Catch"]
    assert (catch["ErrorEquals"], catch["Next"]) == (["States.ALL"], "Discard Credentials")
    discard = states["Discard Credentials"]
    assert discard["Parameters"]["Payload"]["action"] == "discard_credentials"
    assert discard["Next"] == "Failure Not Recorded"
    assert discard["Catch"][0]["Next"] == "Failure Not Recorded"
    assert states["Failure Not Recorded"]["Type"] == "Fail"


# -- each timeout its own reason --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("Autodiscover", DISCOVERY_TIMEOUT),
        ("Verify Mailbox", VERIFICATION_TIMEOUT),
        ("Request Advanced Settings", SETTINGS_TIMEOUT),
    ],
)
def test_each_task_timeout_is_recorded_with_its_own_reason(
    state: str,
    reason: str,
    service: ConnectService,
    token: str,
    steps: VerificationSteps,
    repo: DynamoAgentRepository,
) -> None:
    # Given the state machine: the task's States.Timeout goes to a Pass state naming the reason
    states = json.loads(ASL.read_text())["States"]
    first = states[state]["Catch"][0]
    assert first["ErrorEquals"] == ["States.Timeout"]
    named = states[first["Next"]]
    assert (named["Parameters"], named["Next"]) == ({"code": reason}, "Record Failure")
    # When Record Failure gets what that Pass state hands over
    agent_id = service.submit_credentials(token, _form()).record.agent.agent_id
    output = steps.run(_task(agent_id, "record_failure", failure={"code": reason}))
    # Then the agent failed for that reason, with its own words on the page, and no password is kept
    assert output.code == reason
    assert repo.get("demo", agent_id).status_reason == reason
    assert reason_message(reason) not in ("", reason_message(INTERNAL_ERROR))
    assert stored_secrets(agent_id) == []


# -- the invite email, at most once per version ----------------------------------------------------------
def _request(repo: DynamoAgentRepository, agent_id: str) -> InviteRequested:
    record = repo.get_record("demo", agent_id)
    assert record is not None
    return InviteRequested(tenant_id="demo", agent_id=agent_id, invite_version=record.invite.invite_version)


def test_an_invite_accepted_by_ses_is_not_sent_again_after_a_crash(
    repo: DynamoAgentRepository, invite_repo: DynamoInviteRepository, mailer: Mailer
) -> None:
    # Given SES accepted the email, then the function died before writing `invited`
    agent = lifecycle.add(repo, email=EMAIL)
    crashing = _Failing(repo, "transition", RuntimeError("killed at the time limit"), times=1)
    config = lifecycle.INVITE_CONFIG
    with pytest.raises(RuntimeError):
        invites.deliver_invite(
            _request(repo, agent.agent_id), repo=crashing, invites=invite_repo, mailer=mailer, config=config
        )
    assert len(emails()) == 1
    # When Lambda retries the stream record, Then no second link goes out, and the agent shows invited
    outcome = invites.deliver_invite(
        _request(repo, agent.agent_id), repo=repo, invites=invite_repo, mailer=mailer, config=config
    )
    assert outcome is DeliveryOutcome.SENT
    assert len(emails()) == 1
    assert repo.get("demo", agent.agent_id).status is S.INVITED


def test_an_invite_whose_sending_outcome_is_unknown_is_not_sent_again(
    repo: DynamoAgentRepository, invite_repo: DynamoInviteRepository, mailer: Mailer
) -> None:
    """A read timeout from SES: it may have accepted the email. At most once wins over at least once."""
    agent = lifecycle.add(repo, email=EMAIL)
    mailer.ses = _Failing(mailer.ses, "send_email", ReadTimeoutError(endpoint_url="https://email"), times=1)
    config = lifecycle.INVITE_CONFIG
    with pytest.raises(EmailNotSentError):
        invites.deliver_invite(
            _request(repo, agent.agent_id), repo=repo, invites=invite_repo, mailer=mailer, config=config
        )
    # When Lambda retries the record, Then no email goes out (the first may have), and the agent is not shown
    # "Invite sent" (SES never confirmed it): failed, saying so, so the dashboard offers the resend
    with pytest.raises(InviteDeliveryFailedError):
        invites.deliver_invite(
            _request(repo, agent.agent_id), repo=repo, invites=invite_repo, mailer=mailer, config=config
        )
    assert emails() == []
    after = repo.get("demo", agent.agent_id)
    assert after.status is S.INVITE_FAILED
    assert "may not have been sent" in str(after.status_reason)


@pytest.mark.parametrize(
    ("where", "error"),
    [
        pytest.param(
            "invites.put",
            ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutItem"),
            id="invite-write-throttled",
        ),
        pytest.param("invites.put", _Killed(), id="killed-before-ses"),
    ],
)
def test_an_invite_that_failed_before_ses_is_sent_on_the_retry(
    repo: DynamoAgentRepository,
    invite_repo: DynamoInviteRepository,
    mailer: Mailer,
    where: str,
    error: BaseException,
) -> None:
    """Nothing reached SES: the retry sends the link (once), and only then does the agent show it sent."""
    agent = lifecycle.add(repo, email=EMAIL)
    config = lifecycle.INVITE_CONFIG
    failing = _Failing(invite_repo, where.split(".")[1], error, times=1)
    with pytest.raises(type(error)):
        invites.deliver_invite(
            _request(repo, agent.agent_id), repo=repo, invites=failing, mailer=mailer, config=config
        )
    assert emails() == []
    assert repo.get("demo", agent.agent_id).status is S.INVITE_PENDING
    outcome = invites.deliver_invite(
        _request(repo, agent.agent_id), repo=repo, invites=invite_repo, mailer=mailer, config=config
    )
    assert outcome is DeliveryOutcome.SENT
    assert len(emails()) == 1
    assert repo.get("demo", agent.agent_id).status is S.INVITED


def test_an_invite_ses_refused_is_sent_on_the_retry(
    repo: DynamoAgentRepository, invite_repo: DynamoInviteRepository, mailer: Mailer
) -> None:
    """SES answered (throttled past the in-call retries): nothing went out, so the retry sends it."""
    agent = lifecycle.add(repo, email=EMAIL)
    mailer.ses = _Failing(mailer.ses, "send_email", throttling())
    config = lifecycle.INVITE_CONFIG
    with pytest.raises(EmailNotSentError):
        invites.deliver_invite(
            _request(repo, agent.agent_id), repo=repo, invites=invite_repo, mailer=mailer, config=config
        )
    mailer.ses = mailer.ses._real
    invites.deliver_invite(
        _request(repo, agent.agent_id), repo=repo, invites=invite_repo, mailer=mailer, config=config
    )
    assert len(emails()) == 1
    assert repo.get("demo", agent.agent_id).status is S.INVITED


# -- an answer to the waiting workflow that cannot be handed over ------------------------------------------
def _waiting(
    service: ConnectService, token: str, repo: DynamoAgentRepository, *, confirm: bool, task_token: str | None
) -> str:
    """An agent whose workflow waits for the owner: for the advanced settings, or (`confirm`) to allow a
    server in another domain. Its password is stored."""
    agent = service.submit_credentials(token, _form()).record.agent
    values: dict[str, Any] = {Attr.TASK_TOKEN: task_token} if task_token else {}
    if confirm:
        values[Attr.CONFIRM_HOST] = "mail.hoster.example"
    lifecycle.walk(
        repo, agent, S.NEEDS_SETTINGS, reason="confirm_server" if confirm else None, set_attributes=values
    )
    assert len(stored_secrets(agent.agent_id)) == 1
    return agent.agent_id


def _answer(service: ConnectService, token: str, confirm: bool) -> Any:
    from onboarding.connect.forms import AllowServerForm, SettingsForm

    if confirm:
        return service.allow_server(token, AllowServerForm.model_validate({"host": "mail.hoster.example"}))
    form = SettingsForm.model_validate({"server": "mail.contoso.com", "password": "N3w-pass"})
    return service.submit_settings(token, form)


_RESUME_TIMEOUT = ReadTimeoutError(endpoint_url="https://states")


@pytest.mark.parametrize(
    ("confirm", "where", "error"),
    [
        pytest.param(False, "sfn.send_task_success", _RESUME_TIMEOUT, id="settings-resume-timeout"),
        pytest.param(False, "sfn.send_task_success", RuntimeError("a bug"), id="settings-resume-bug"),
        pytest.param(
            False, "credentials.put", EndpointConnectionError(endpoint_url="https://kms"), id="settings-seal"
        ),
        pytest.param(True, "sfn.send_task_success", _RESUME_TIMEOUT, id="allow-resume-timeout"),
        pytest.param(True, "sfn.send_task_success", RuntimeError("a bug"), id="allow-resume-bug"),
    ],
)
def test_an_answer_that_cannot_reach_the_workflow_ends_failed_with_no_secret_kept(
    service: ConnectService,
    token: str,
    repo: DynamoAgentRepository,
    confirm: bool,
    where: str,
    error: BaseException,
) -> None:
    # Given a workflow waiting for the owner's answer, and sealing or resuming failing with this error
    agent_id = _waiting(service, token, repo, confirm=confirm, task_token="a-task-token")
    owner, method = where.split(".")
    setattr(service, owner, _Failing(getattr(service, owner), method, error))
    # When the owner sends the settings (with a new password) or allows the server
    view = _answer(service, token, confirm)
    # Then the agent is not left `connecting`: failed, the page says so and offers the form, no secret stays
    assert (view.status, view.reason) == (S.FAILED, INTERNAL_ERROR)
    assert "on our side" in view.message
    assert view.record.connection.task_token is None
    assert stored_secrets(agent_id) == []


@pytest.mark.parametrize("confirm", [False, True], ids=["settings", "allow-server"])
def test_an_answer_with_no_workflow_waiting_keeps_no_secret(
    service: ConnectService, token: str, repo: DynamoAgentRepository, confirm: bool
) -> None:
    # Given the wait ended (no task token any more) while the page still asked
    agent_id = _waiting(service, token, repo, confirm=confirm, task_token=None)
    # When the owner answers, Then the agent failed (the wait is over) and no secret is kept
    view = _answer(service, token, confirm)
    assert (view.status, view.reason) == (S.FAILED, SETTINGS_TIMEOUT)
    assert stored_secrets(agent_id) == []
