"""The connect page in reconnect mode: a reconnect (or password-expiry) link opens the same page, which says
what happened in plain words and asks only for what is needed. AWS is moto; the links come from the real
sender's emails."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.identity_sim import IdentitySimulator
from onboarding.agents.models import AgentStatus, Attr
from onboarding.invites.reconnect import ReconnectPolicy, ReconnectPurpose, request_reconnect
from onboarding.invites.tokens import token_hash
from tests.connect_helpers import (
    EMAIL,
    PASSWORD,
    ConnectEnv,
    connect_environment,
    credentials,
    get,
    nonce_of,
    post,
    scan,
)
from tests.invite_helpers import BASE_URL, emails, token_of
from tests.m365_fixtures import REDIRECT_URI, point_functions_at

S = AgentStatus
MARCH_3 = "2026-03-03T08:15:00.000Z"
EWS_URL = "https://mail.contoso.com/EWS/Exchange.asmx"


def _words(page: str) -> str:
    return html.unescape(" ".join(page.split()))


def _reconnect_link(
    env: ConnectEnv,
    status: AgentStatus = S.NEEDS_RECONNECT,
    *,
    problem: str | None = "auth_failed",
    purpose: ReconnectPurpose = ReconnectPurpose.RECONNECT,
    **attributes: Any,
) -> tuple[str, str]:
    """A mailbox that connected (settings found by discovery), then found broken by a check (or warned about its
    password), and the token of the link its email carries."""
    invited = env.invite()
    env.repo.transition("demo", invited.agent_id, S.CONNECTING)
    found = {Attr.EWS_URL: EWS_URL, Attr.AUTH_TYPE: "NTLM", Attr.EXCHANGE_USERNAME: "CONTOSO\\ann"}
    env.repo.transition("demo", invited.agent_id, S.VERIFIED, set_attributes={**found, **attributes})
    if status is not S.VERIFIED:
        broken = {Attr.CHECK_PROBLEM: problem, Attr.PROBLEM_SINCE: MARCH_3, Attr.FAILING_SINCE: MARCH_3}
        env.repo.transition("demo", invited.agent_id, status, reason=problem, set_attributes=broken)
    request_reconnect(env.repo, "demo", invited.agent_id, purpose=purpose, policy=ReconnectPolicy())
    env.deliver()
    return invited.agent_id, token_of(emails()[-1])


def test_a_refused_password_page_says_what_happened_and_asks_only_for_the_new_password(
    env: ConnectEnv,
) -> None:
    # Given a mailbox whose server stopped accepting the stored password on 3 March, and its reconnect link
    _, token = _reconnect_link(env)
    # When the owner opens it
    page = get(f"/connect/{token}")
    # Then the page says what happened, in plain words, and asks for the new password with the settings kept
    assert page.status == 200
    words = _words(page.body)
    assert "<h1>Reconnect your mailbox</h1>" in words
    assert (
        f"Your mailbox {EMAIL} stopped connecting on 3 March 2026: the server no longer accepts the password."
        in words
    )
    assert "We will not try the old password again." in words
    assert (
        "Kept from the last connection: server <strong>mail.contoso.com</strong>, username <strong>CONTOSO\\ann</strong>."
        in words
    )
    assert 'name="email" value="ann@contoso.com" required readonly' in words
    assert "New password" in words
    assert "Sign in with Microsoft" not in words
    assert "Where is your mailbox?" not in words  # no provider choice: the mailbox's kind is known


def test_opening_a_reconnect_link_changes_nothing(env: ConnectEnv) -> None:
    _, token = _reconnect_link(env)
    before = scan()
    for _ in range(3):
        assert get(f"/connect/{token}").status == 200
    assert scan() == before


def test_a_disconnected_mailbox_page_names_the_server_problem_and_what_to_forward_to_it(
    env: ConnectEnv,
) -> None:
    _, token = _reconnect_link(env, S.DISCONNECTED, problem="unreachable")
    words = _words(get(f"/connect/{token}").body)
    assert (
        f"Your mailbox {EMAIL} could not be reached since 3 March 2026: the server could not be reached."
        in words
    )
    assert "the mailbox connects again by itself once the server can be reached" in words
    assert "For the person who runs your company's email" in words
    assert "cannot reach the Exchange server of ann@contoso.com from the internet" in words


def test_a_password_expiry_link_asks_for_the_new_password_while_the_mailbox_still_connects(
    env: ConnectEnv,
) -> None:
    expires = datetime.now(UTC) + timedelta(days=5)
    agent_id, token = _reconnect_link(
        env,
        S.VERIFIED,
        purpose=ReconnectPurpose.PASSWORD_EXPIRY,
        **{Attr.PASSWORD_EXPIRES_AT: expires.isoformat().replace("+00:00", "Z")},
    )
    page = get(f"/connect/{token}")
    assert page.status == 200
    words = _words(page.body)
    assert "<h1>Keep your mailbox connected</h1>" in words
    assert f"The password of {EMAIL} expires on {expires.day} {expires:%B %Y}. After you change it" in words
    # and the old invite link of the same connected mailbox stays used up
    assert env.repo.get("demo", agent_id).status is S.VERIFIED


def test_the_new_password_reconnects_with_the_settings_that_worked(env: ConnectEnv) -> None:
    # Given a reconnect link of a mailbox connected with settings the owner typed
    agent_id, token = _reconnect_link(env, **{Attr.USERNAME: "CONTOSO\\ann", Attr.SERVER: "mail.contoso.com"})
    before = env.item(agent_id)
    # When the owner posts only the new password
    nonce = nonce_of(get(f"/connect/{token}").body)
    answer = post(f"/connect/{token}", credentials(nonce))
    # Then the same agent is connecting with its next attempt, the settings kept, and the workflow started
    assert answer.status == 303
    item = env.item(agent_id)
    assert item["status"] == "connecting"
    assert (item[Attr.USERNAME], item[Attr.SERVER], item[Attr.EWS_URL]) == (
        "CONTOSO\\ann",
        "mail.contoso.com",
        EWS_URL,
    )
    assert item[Attr.ATTEMPT] == before.get(Attr.ATTEMPT, 0) + 1
    assert item[Attr.INVITE_HASH] == token_hash(token)
    assert [e["name"] for e in env.executions()] == [f"{agent_id}-{item[Attr.ATTEMPT]}"]
    assert PASSWORD not in str(scan())


def test_a_failed_reconnect_shows_the_reconnect_page_again_with_the_tries_left(env: ConnectEnv) -> None:
    agent_id, token = _reconnect_link(env)
    nonce = nonce_of(get(f"/connect/{token}").body)
    post(f"/connect/{token}", credentials(nonce))
    # When the workflow finds the new password wrong too (as it records it), counted on the link
    env.repo.transition("demo", agent_id, S.FAILED, reason="auth_failed")
    invite = env.invites.get(token_hash(token))
    assert invite is not None
    env.invites.add_failed_attempt(invite, max_failed_attempts=10)
    # Then the link's page says so above the same reconnect form, with the tries left
    for path in (f"/connect/{token}", f"/connect/{token}/status"):
        words = _words(get(path).body)
        assert "<h1>Reconnect your mailbox</h1>" in words
        assert "did not accept the password" in words
        assert "9 tries left before this link locks." in words


def test_a_used_reconnect_link_is_a_410_page(env: ConnectEnv) -> None:
    _, token = _reconnect_link(env)
    invite = env.invites.get(token_hash(token))
    assert invite is not None
    env.invites.consume(invite, at=datetime.now(UTC), max_failed_attempts=10)
    assert get(f"/connect/{token}").status == 410


def test_a_newer_reconnect_email_replaces_the_link(env: ConnectEnv) -> None:
    agent_id, token = _reconnect_link(env)
    later = datetime.now(UTC) + timedelta(days=4)
    request_reconnect(
        env.repo, "demo", agent_id, purpose=ReconnectPurpose.RECONNECT, policy=ReconnectPolicy(), now=later
    )
    env.deliver()
    assert get(f"/connect/{token}").status == 410
    assert get(f"/connect/{token_of(emails()[-1])}").status == 200


# -- Microsoft 365 -----------------------------------------------------------------------------------
@pytest.fixture
def m365_env(
    moto_aws: None, monkeypatch: pytest.MonkeyPatch, identity_sim: IdentitySimulator
) -> Iterator[ConnectEnv]:
    identity_sim.register_app(
        client_id=identity_sim.client_id,
        client_secret=identity_sim.client_secret,
        redirect_uris=[REDIRECT_URI, f"{BASE_URL}/connect/oauth/callback"],
    )
    with connect_environment(monkeypatch) as connect_env:
        point_functions_at(identity_sim, monkeypatch, M365_TOKEN_TIMEOUT="1")
        yield connect_env


def test_a_microsoft_365_mailbox_is_asked_to_sign_in_with_microsoft_again(m365_env: ConnectEnv) -> None:
    _, token = _reconnect_link(m365_env, problem="m365_token_rejected", **{Attr.VERIFY_METHOD: "graph"})
    words = _words(get(f"/connect/{token}").body)
    assert (
        f"Your mailbox {EMAIL} stopped connecting on 3 March 2026: Microsoft no longer accepts the sign-in."
        in words
    )
    assert "Sign in with Microsoft again to reconnect it: nothing else is needed." in words
    assert f'action="{BASE_URL}/connect/{token}/microsoft"' in words
    assert 'type="password"' not in words
