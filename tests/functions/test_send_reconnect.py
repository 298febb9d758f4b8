"""Reconnect and password-expiry emails, sent by the invite sender from the records the agents stream really
carries (moto), filtered as in template.yaml; SES is moto's."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

import boto3
import pytest

from functions.send_invite import app
from onboarding import deps
from onboarding.agents.models import Agent, AgentStatus, Attr
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core.errors import InviteExpiredError, InviteRevokedError, InviteUsedError
from onboarding.invites import delivery as invites
from onboarding.invites.models import LinkPurpose
from onboarding.invites.reconnect import ReconnectPolicy, ReconnectPurpose, request_reconnect
from onboarding.invites.store import DynamoInviteRepository
from tests import lifecycle
from tests.conftest import TABLE_NAME, LambdaContext
from tests.invite_helpers import BASE_URL, SENDER, FlakySes, StreamReader, emails, token_of, verify_sender

S = AgentStatus
P = ReconnectPurpose
POLICY = ReconnectPolicy(min_interval=timedelta(days=3), max_emails=3)
MARCH_3 = "2026-03-03T08:15:00.000Z"


@pytest.fixture
def env(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[StreamReader]:
    monkeypatch.setenv("INVITE_SENDER", parseaddr(SENDER)[1])
    monkeypatch.setenv("INVITE_SENDER_NAME", parseaddr(SENDER)[0])
    monkeypatch.setenv("PUBLIC_BASE_URL", BASE_URL)
    monkeypatch.setenv("SES_CONFIGURATION_SET", "invites")
    verify_sender()
    boto3.client("sesv2").create_configuration_set(ConfigurationSetName="invites")
    deps.reset()
    reader = StreamReader()
    yield reader
    deps.reset()


def _invites() -> DynamoInviteRepository:
    return deps.invite_repository(TABLE_NAME)


def _run(event: dict[str, Any]) -> dict[str, Any]:
    return app.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]


def _broken(
    repo: DynamoAgentRepository,
    env: StreamReader,
    status: AgentStatus = S.NEEDS_RECONNECT,
    *,
    problem: str = "auth_failed",
    microsoft: bool = False,
    email: str = "ann@contoso.com",
) -> Agent:
    """An agent a check found broken (as the health checks leave it), its invite's records read already."""
    agent = lifecycle.add(repo, email=email, name="Ann Lee", tenant_name="Contoso Ltd")
    attributes: dict[str, Any] = {
        Attr.CHECK_PROBLEM: problem,
        Attr.CHECK_STATE: "failed",
        Attr.PROBLEM_SINCE: MARCH_3,
        Attr.FAILING_SINCE: MARCH_3,
    }
    if microsoft:
        attributes[Attr.VERIFY_METHOD] = "graph"
    agent = lifecycle.walk(repo, agent, status, reason=problem, set_attributes=attributes)
    env.new_records()  # the invite's records: not this test's
    return agent


def _ask(repo: DynamoAgentRepository, agent: Agent, **kwargs: Any) -> bool:
    purpose = kwargs.pop("purpose", P.RECONNECT)
    return request_reconnect(repo, "demo", agent.agent_id, purpose=purpose, policy=POLICY, **kwargs).requested


def test_a_reconnect_request_emails_the_owner_once_with_a_new_link_in_plain_words(
    env: StreamReader, repo: DynamoAgentRepository
) -> None:
    # Given an agent whose server refused the stored password on 3 March
    agent = _broken(repo, env)
    # When a reconnect email is asked for and the stream hands the record to the sender
    assert _ask(repo, agent)
    event = env.event()
    assert [r["eventName"] for r in event["Records"]] == ["MODIFY"]
    assert _run(event) == {"batchItemFailures": []}
    # Then one email, in words the owner can act on, with a reconnect link
    (sent,) = emails()
    assert sent["to"] == "ann@contoso.com"
    assert sent["subject"] == "Your mailbox ann@contoso.com stopped connecting: please reconnect it"
    for part in (" ".join(sent["text"].split()), " ".join(sent["html"].split())):
        assert "stopped connecting on 3 March 2026: the server no longer accepts the password" in part
        assert "If you changed your password, open this link and enter the new one" in part
        assert "We will not try the old password again." in part
        assert "Contoso Ltd cannot read it until you reconnect it" in part
    token = token_of(sent)
    invite, found = invites.resolve_invite(repo, _invites(), token)
    assert (invite.purpose, invite.reconnect_version, found.agent_id) == (
        LinkPurpose.RECONNECT,
        1,
        agent.agent_id,
    )
    # and the sending is recorded, the request no longer pending; the sender's writes ask for nothing
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.health.reconnect_sent_at is not None
    assert (record.health.reconnect_pending, record.health.reconnect_accepted) == (None, 1)
    assert record.agent.health.reconnect_email_sent_at == record.health.reconnect_sent_at
    assert env.new_records() == []


def test_a_replayed_record_sends_no_second_email(env: StreamReader, repo: DynamoAgentRepository) -> None:
    agent = _broken(repo, env)
    _ask(repo, agent)
    event = env.event()
    _run(event)
    assert _run(event) == {"batchItemFailures": []}
    assert len(emails()) == 1


def test_within_the_interval_nothing_is_asked_and_nothing_sent(
    env: StreamReader, repo: DynamoAgentRepository
) -> None:
    agent = _broken(repo, env)
    now = datetime.now(UTC)
    assert _ask(repo, agent, now=now)
    _run(env.event())
    # When a check asks again a day later
    assert not _ask(repo, agent, now=now + timedelta(days=1))
    # Then no record asks the sender, no second email
    assert env.new_records() == []
    assert len(emails()) == 1


def test_a_reminder_replaces_the_earlier_link(env: StreamReader, repo: DynamoAgentRepository) -> None:
    agent = _broken(repo, env)
    now = datetime.now(UTC)
    _ask(repo, agent, now=now - timedelta(days=4))
    _run(env.event())
    assert _ask(repo, agent, now=now)
    _run(env.event())
    first, second = emails()
    assert "still not connected" not in first["text"]
    assert "We sent you this reminder because the mailbox is still not connected." in second["text"]
    with pytest.raises(InviteRevokedError):
        invites.resolve_invite(repo, _invites(), token_of(first))
    invite, _ = invites.resolve_invite(repo, _invites(), token_of(second))
    assert invite.reconnect_version == 2


def test_an_email_the_owner_no_longer_needs_is_not_sent(
    env: StreamReader, repo: DynamoAgentRepository
) -> None:
    # Given a reconnect email asked for, and the owner reconnecting before the sender ran
    agent = _broken(repo, env)
    _ask(repo, agent)
    event = env.event()
    repo.transition("demo", agent.agent_id, S.CONNECTING)
    # When the record arrives
    assert _run(event) == {"batchItemFailures": []}
    # Then nothing is sent, and nothing stays pending
    assert emails() == []
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.health.reconnect_pending is None


def test_a_request_whose_email_was_never_handled_still_gets_one_later(
    env: StreamReader, repo: DynamoAgentRepository
) -> None:
    # Given a request whose stream record was lost (never handled: the email stays pending)
    agent = _broken(repo, env)
    now = datetime.now(UTC)
    _ask(repo, agent, now=now - timedelta(days=4))
    env.new_records()
    # When the next request comes
    assert _ask(repo, agent, now=now)
    # Then its record wakes the sender, which sends the newest version
    event = env.event()
    assert len(event["Records"]) == 1
    _run(event)
    (sent,) = emails()
    invite, _ = invites.resolve_invite(repo, _invites(), token_of(sent))
    assert invite.reconnect_version == 2


def test_an_email_ses_may_have_sent_is_not_sent_again(
    env: StreamReader, repo: DynamoAgentRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a send that reached SES but whose answer was lost (a read timeout: SES may have accepted it)
    from botocore.exceptions import ReadTimeoutError

    agent = _broken(repo, env)
    _ask(repo, agent)
    event = env.event()

    class LostAnswer(FlakySes):
        def send_email(self, **kwargs: Any) -> Any:
            self.calls += 1
            raise ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com")

    ses = LostAnswer()
    mailer = app.deps().mailer
    monkeypatch.setattr(mailer, "ses", ses)
    monkeypatch.setattr(mailer, "sleep", lambda _: None)
    # When the record fails and is retried
    first = _run(event)
    second = _run(event)
    # Then the retry does not call SES again: one call in all, and nothing stays pending
    assert len(first["batchItemFailures"]) == 1
    assert second == {"batchItemFailures": []}
    assert ses.calls == 1
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert (record.health.reconnect_pending, record.health.reconnect_sent_at) == (None, None)


@pytest.mark.parametrize(
    ("status", "problem", "microsoft", "subject", "words"),
    [
        (
            S.NEEDS_RECONNECT,
            "m365_token_rejected",
            True,
            "Your mailbox ann@contoso.com stopped connecting: please reconnect it",
            [
                "stopped connecting on 3 March 2026: Microsoft no longer accepts the sign-in",
                'open this link and press "Sign in with Microsoft" again',
            ],
        ),
        (
            S.NEEDS_RECONNECT,
            "m365_conditional_access_blocked",
            True,
            "Your mailbox ann@contoso.com stopped connecting: please reconnect it",
            [
                "a Conditional Access policy of your organisation now blocks the sign-in",
                "For the person who runs your company's email:",
                "A Conditional Access policy blocks our app's sign-in for ann@contoso.com",
            ],
        ),
        (
            S.DISCONNECTED,
            "unreachable",
            False,
            "Your mailbox ann@contoso.com cannot be reached",
            [
                "could not be reached since 3 March 2026: the server could not be reached",
                "forward the note below to the person who runs your company's email",
                "cannot reach the Exchange server of ann@contoso.com from the internet",
            ],
        ),
        (
            S.NEEDS_RECONNECT,
            "account_locked",
            False,
            "Your mailbox ann@contoso.com stopped connecting: please reconnect it",
            [
                "the server says the account is locked or its password has expired",
                "Sign in to your email once",
                "The Exchange account of ann@contoso.com is locked",
            ],
        ),
    ],
)
def test_each_problem_has_its_own_words(
    env: StreamReader,
    repo: DynamoAgentRepository,
    status: AgentStatus,
    problem: str,
    microsoft: bool,
    subject: str,
    words: list[str],
) -> None:
    agent = _broken(repo, env, status, problem=problem, microsoft=microsoft)
    _ask(repo, agent)
    _run(env.event())
    (sent,) = emails()
    assert sent["subject"] == subject
    for part in (" ".join(sent["text"].split()), html.unescape(" ".join(sent["html"].split()))):
        for text in words:
            assert text in part
        assert problem not in part.replace(sent["link"], "")  # never the code


def test_a_password_expiry_warning_carries_a_link_valid_until_after_the_expiry(
    env: StreamReader, repo: DynamoAgentRepository
) -> None:
    # Given a connected mailbox whose password expires in 20 days (longer than a link's usual 7)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=20)
    agent = lifecycle.add(repo, name="Ann Lee", tenant_name="Contoso Ltd")
    agent = lifecycle.walk(
        repo,
        agent,
        S.VERIFIED,
        set_attributes={Attr.PASSWORD_EXPIRES_AT: expires.isoformat().replace("+00:00", "Z")},
    )
    env.new_records()
    # When the warning is asked for and sent
    assert _ask(repo, agent, purpose=P.PASSWORD_EXPIRY)
    _run(env.event())
    # Then it says when, and what to do after changing the password
    (sent,) = emails()
    day = f"{expires.day} {expires:%B %Y}"
    assert sent["subject"] == f"Your password expires on {day}: keep your mailbox ann@contoso.com connected"
    text = " ".join(sent["text"].split())
    assert f"The password of your mailbox ann@contoso.com expires on {day}." in text
    assert "After you change your password, use this link to keep your mailbox connected" in text
    # and its link works for the connected mailbox, until after the expiry date
    token = token_of(sent)
    invite, found = invites.resolve_invite(repo, _invites(), token)
    assert (invite.purpose, found.status) == (LinkPurpose.PASSWORD_EXPIRY, S.VERIFIED)
    assert invite.expires_at > expires
    invites.resolve_invite(repo, _invites(), token, now=expires + timedelta(days=1))
    with pytest.raises(InviteExpiredError):
        invites.resolve_invite(repo, _invites(), token, now=expires + timedelta(days=8))


def test_a_reconnect_link_is_used_once_and_only_while_it_is_the_agents(
    env: StreamReader, repo: DynamoAgentRepository
) -> None:
    agent = _broken(repo, env)
    _ask(repo, agent)
    _run(env.event())
    token = token_of(emails()[0])
    # Reading it changes nothing (mail scanners open links): it resolves again and again
    for _ in range(3):
        invites.resolve_invite(repo, _invites(), token)
    # Used once
    invites.consume_invite(repo, _invites(), token)
    with pytest.raises(InviteUsedError):
        invites.consume_invite(repo, _invites(), token)
    # and a link of an older reconnect email is refused even unused
    record = repo.get_record("demo", agent.agent_id)
    assert record is not None
    assert record.health.reconnect_version == 1
