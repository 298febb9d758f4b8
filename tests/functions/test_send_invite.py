"""The invite sender, fed with the records the agents stream really carries (moto), filtered as in
template.yaml; SES is moto's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from functions.send_invite import app
from onboarding import deps
from onboarding.agents import manage as agents
from onboarding.agents.models import Agent, AgentStatus, NewAgent
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core.errors import (
    InviteExpiredError,
    InviteRevokedError,
    InviteUsedError,
)
from onboarding.invites import delivery as invites
from onboarding.invites.store import DynamoInviteRepository
from onboarding.invites.tokens import token_hash
from tests.conftest import TABLE_NAME, LambdaContext
from tests.invite_helpers import (
    BASE_URL,
    SENDER,
    FlakySes,
    StreamReader,
    emails,
    throttling,
    token_of,
    verify_sender,
)

S = AgentStatus


@pytest.fixture
def env(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[StreamReader]:
    monkeypatch.setenv("INVITE_SENDER", parseaddr(SENDER)[1])
    monkeypatch.setenv("INVITE_SENDER_NAME", parseaddr(SENDER)[0])
    monkeypatch.setenv("PUBLIC_BASE_URL", BASE_URL)
    monkeypatch.setenv("SES_CONFIGURATION_SET", "invites")
    verify_sender()
    boto3.client("sesv2").create_configuration_set(ConfigurationSetName="invites")
    deps.reset()
    yield StreamReader()
    deps.reset()


def _add(
    repo: DynamoAgentRepository,
    name: str = "Ann Lee",
    tenant_name: str | None = "Contoso Ltd",
    inviter_name: str | None = None,
) -> Agent:
    new = NewAgent(name=name, email="ann@contoso.com", type="ms_exchange", inviterName=inviter_name)
    return agents.add_agent(repo, "demo", new, tenant_name=tenant_name)


def _invites() -> DynamoInviteRepository:
    return deps.invite_repository(TABLE_NAME)


def _run(event: dict[str, Any]) -> dict[str, Any]:
    return app.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]


def _use_ses(monkeypatch: pytest.MonkeyPatch, ses: FlakySes) -> None:
    mailer = app.deps().mailer
    mailer.ses = ses
    mailer.sleep = lambda _: None


def test_adding_an_agent_emails_an_html_and_text_invite_with_the_link(
    env: StreamReader, repo: DynamoAgentRepository
) -> None:
    agent = _add(repo)
    event = env.event()
    assert [r["eventName"] for r in event["Records"]] == ["INSERT"]
    assert _run(event) == {"batchItemFailures": []}
    (sent,) = emails()
    assert sent["to"] == "ann@contoso.com"
    assert "Contoso Ltd" in sent["subject"]
    for part in (sent["text"], sent["html"]):
        assert "Contoso Ltd" in part
        assert "Ann Lee" in part
        assert "What connecting means" in part
        assert "expires on" in part
    token = token_of(sent)
    assert sent["link"] == f"{BASE_URL}/connect/{token}"
    assert f'href="{BASE_URL}/connect/{token}"' in sent["html"]
    assert repo.get("demo", agent.agent_id).status is S.INVITED


def test_only_the_hash_of_the_token_is_stored(env: StreamReader, repo: DynamoAgentRepository) -> None:
    _add(repo)
    _run(env.event())
    token = token_of(emails()[0])
    items = boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
    assert token not in str(items)
    assert token_hash(token) in str(items)


def test_without_an_inviter_name_the_email_says_who_in_neutral_words_never_the_tenant_id(
    env: StreamReader, repo: DynamoAgentRepository
) -> None:
    # Given an agent added with no inviter name, by a token without the display-name claim (tenant "demo")
    _add(repo, tenant_name=None)
    # When its invite is sent
    _run(env.event())
    # Then subject, text and HTML name no one, and never the tenant id
    (sent,) = emails()
    assert sent["subject"] == "You are invited to connect your mailbox"
    assert (
        "You are asked to connect your mailbox ann@contoso.com to a team's mailbox monitoring."
        in sent["text"]
    )
    assert "ask the team that sent this invite to send a new invite" in " ".join(sent["text"].split())
    assert "a team's mailbox monitoring" in sent["html"]
    for part in (sent["subject"], sent["text"], sent["html"]):
        without_link = part.replace(sent["link"], "")  # a random token could hold any letters
        assert "demo" not in without_link
        assert "None" not in without_link


def test_the_inviter_name_given_with_the_agent_comes_before_the_token_claim(
    env: StreamReader, repo: DynamoAgentRepository
) -> None:
    # Given an agent added with an inviter name that looks like markup, by a token that names the tenant too
    _add(repo, tenant_name="Contoso Ltd", inviter_name="Support <b>& Sales</b>")
    _run(env.event())
    # Then the email names the inviter given with the agent: as text in the subject and the text part,
    # escaped in the HTML
    (sent,) = emails()
    assert sent["subject"] == "Support <b>& Sales</b> invites you to connect your mailbox"
    assert "Support <b>& Sales</b> has asked to connect your mailbox" in sent["text"]
    assert "<title>Support &lt;b&gt;&amp; Sales&lt;/b&gt; invites you" in sent["html"]
    assert "<b>&" not in sent["html"]
    assert "Contoso Ltd" not in sent["text"]


def test_an_agent_name_with_markup_arrives_escaped_in_the_html(
    env: StreamReader, repo: DynamoAgentRepository
) -> None:
    _add(repo, name="<script>alert(1)</script>", tenant_name="<b>Evil</b> & Co")
    _run(env.event())
    (sent,) = emails()
    assert "<script>" not in sent["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sent["html"]
    assert "&lt;b&gt;Evil&lt;/b&gt; &amp; Co" in sent["html"]
    assert "<script>alert(1)</script>" in sent["text"]  # plain text is not HTML


def test_a_replayed_record_sends_no_second_email(env: StreamReader, repo: DynamoAgentRepository) -> None:
    _add(repo)
    event = env.event()
    _run(event)
    assert _run(event) == {"batchItemFailures": []}
    assert len(emails()) == 1


def test_writes_after_the_request_do_not_ask_again(env: StreamReader, repo: DynamoAgentRepository) -> None:
    _add(repo)
    _run(env.event())
    assert env.new_records() == []  # invite_pending -> invited, the token item: filtered out


def test_a_resend_sends_a_new_link_and_the_old_one_stops_working(
    env: StreamReader, repo: DynamoAgentRepository
) -> None:
    agent = _add(repo)
    _run(env.event())
    invites.request_invite(repo, "demo", agent.agent_id)
    event = env.event()
    assert [r["eventName"] for r in event["Records"]] == ["MODIFY"]
    _run(event)
    first, second = (token_of(e) for e in emails())
    assert first != second
    with pytest.raises(InviteRevokedError):
        invites.resolve_invite(repo, _invites(), first)
    invite, found = invites.resolve_invite(repo, _invites(), second)
    assert (invite.invite_version, found.agent_id, found.status) == (2, agent.agent_id, S.INVITED)


def test_ses_throttling_is_retried_with_backoff(
    env: StreamReader, repo: DynamoAgentRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = _add(repo)
    ses = FlakySes(throttling(), throttling())
    _use_ses(monkeypatch, ses)
    assert _run(env.event()) == {"batchItemFailures": []}
    assert ses.calls == 3
    assert len(emails()) == 1
    assert repo.get("demo", agent.agent_id).status is S.INVITED


def test_a_permanent_ses_refusal_ends_in_invite_failed_and_a_failed_record(
    env: StreamReader, repo: DynamoAgentRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = _add(repo)
    rejected = ClientError(
        {"Error": {"Code": "MessageRejected", "Message": "Email address is not verified."}}, "SendEmail"
    )
    _use_ses(monkeypatch, FlakySes(rejected))
    event = env.event()
    sequence = event["Records"][0]["dynamodb"]["SequenceNumber"]
    assert _run(event) == {"batchItemFailures": [{"itemIdentifier": sequence}]}
    failed = repo.get("demo", agent.agent_id)
    assert failed.status is S.INVITE_FAILED
    assert failed.status_reason is not None
    assert "MessageRejected" in failed.status_reason
    # Lambda's retries fail too (nothing is sent again), so the record ends in the on-failure queue.
    assert _run(event) == {"batchItemFailures": [{"itemIdentifier": sequence}]}
    assert emails() == []


def test_sends_failing_again_and_again_end_in_invite_failed(
    env: StreamReader, repo: DynamoAgentRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = _add(repo)
    _use_ses(monkeypatch, FlakySes(*[throttling()] * 100))
    event = env.event()
    results = [_run(event)["batchItemFailures"] for _ in range(4)]
    assert all(results)
    assert repo.get("demo", agent.agent_id).status is S.INVITE_FAILED


def test_resolving_a_link_never_changes_the_invite(env: StreamReader, repo: DynamoAgentRepository) -> None:
    _add(repo)
    _run(env.event())
    token = token_of(emails()[0])
    key = {"pk": {"S": f"INVITE#{token_hash(token)}"}, "sk": {"S": "INVITE"}}
    ddb = boto3.client("dynamodb")
    before = ddb.get_item(TableName=TABLE_NAME, Key=key)["Item"]
    for _ in range(3):
        invites.resolve_invite(repo, _invites(), token)
    assert ddb.get_item(TableName=TABLE_NAME, Key=key)["Item"] == before


def test_of_two_racing_consumers_exactly_one_wins(env: StreamReader, repo: DynamoAgentRepository) -> None:
    """Given two consumers that both resolved the link while it was unused, when both write, then the
    conditional write lets exactly one through. (Interleaved deterministically: moto's in-process
    transactions are not thread-safe, their rollback can restore a stale snapshot.)"""
    _add(repo)
    _run(env.event())
    token = token_of(emails()[0])
    store = _invites()
    first, _ = invites.resolve_invite(repo, _invites(), token)
    second, _ = invites.resolve_invite(repo, _invites(), token)
    outcomes: list[str] = []
    for invite in (first, second):
        try:
            store.consume(invite, at=datetime.now(UTC), max_failed_attempts=10)
            outcomes.append("won")
        except InviteUsedError:
            outcomes.append("used")
    assert outcomes == ["won", "used"]
    with pytest.raises(InviteUsedError):
        invites.consume_invite(repo, _invites(), token)
    invite, _ = invites.resolve_invite(
        repo, _invites(), token, allow_used=True
    )  # a status page still resolves
    assert invite.used_at is not None


def test_expiry_is_checked_in_code(env: StreamReader, repo: DynamoAgentRepository) -> None:
    _add(repo)
    _run(env.event())
    token = token_of(emails()[0])
    invites.resolve_invite(repo, _invites(), token, now=datetime.now(UTC) + timedelta(days=6, hours=23))
    with pytest.raises(InviteExpiredError):
        invites.resolve_invite(repo, _invites(), token, now=datetime.now(UTC) + timedelta(days=7, minutes=1))


def test_a_record_without_a_usable_image_fails_alone(env: StreamReader, repo: DynamoAgentRepository) -> None:
    # Given a batch whose first record's new image lacks the agent id, and whose second asks for an invite
    _add(repo)
    event = env.event()
    good = event["Records"][0]
    broken = {**good, "dynamodb": {**good["dynamodb"], "SequenceNumber": "1"}}
    broken["dynamodb"]["NewImage"] = {k: v for k, v in good["dynamodb"]["NewImage"].items() if k != "agentId"}
    # When the batch is processed
    result = _run({"Records": [broken, good]})
    # Then only the broken record is reported failed, and the good one's invite is sent
    assert result == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    assert len(emails()) == 1
