"""The hosted connect page (functions/auth_callback), invoked as API Gateway invokes it, against moto:
the table from template.yaml, the invite link issued by the real invite sender, the real ASL state
machine (not executed here: the workflow's own tests are in tests/statemachine)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto.core.config import default_user_config

from functions.auth_callback import app
from onboarding.agents.models import AgentStatus, Attr
from onboarding.connect import pages
from onboarding.invites import delivery as invites
from onboarding.invites.tokens import token_hash
from tests import lifecycle
from tests.conftest import TABLE_NAME, stored_password
from tests.connect_helpers import (
    CSRF_KEY,
    DASHBOARD_URL,
    EMAIL,
    PASSWORD,
    Answer,
    ConnectEnv,
    Invited,
    call,
    credentials,
    event_for,
    get,
    nonce_of,
    post,
    scan,
)
from tests.invite_helpers import BASE_URL

S = AgentStatus
UNKNOWN_TOKEN = "A" * 43


def page_nonce(token: str) -> str:
    return nonce_of(get(f"/connect/{token}").body)


def submit(token: str, **fields: str) -> Answer:
    return post(f"/connect/{token}", credentials(page_nonce(token), **fields))


def to_status(
    env: ConnectEnv,
    invited: Invited,
    status: AgentStatus,
    reason: str | None = None,
    set_attributes: dict[str, str] | None = None,
) -> None:
    """Walk the agent along the lifecycle to `status` (as the workflow would)."""
    agent = env.repo.get("demo", invited.agent_id)
    lifecycle.walk(env.repo, agent, status, reason=reason, set_attributes=set_attributes)


# -- 1. the page -----------------------------------------------------------------------------------
def assert_security_headers(answer: Answer) -> None:
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_the_link_shows_the_inviter_the_mailbox_and_the_exchange_form(invited: Invited) -> None:
    answer = get(f"/connect/{invited.token}")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert_security_headers(answer)
    assert "Contoso Ltd" in answer.body
    assert EMAIL in answer.body
    # One provider, said once: no choice offered of what does not exist (this stack has no Entra app)
    assert "Your Microsoft Exchange (on-premises) mailbox" in answer.body
    assert 'name="provider"' not in answer.body
    assert "not available yet" not in answer.body
    assert f'name="email" value="{EMAIL}"' in answer.body
    assert f'action="{BASE_URL}/connect/{invited.token}"' in answer.body
    assert nonce_of(answer.body)


def test_without_an_inviter_name_the_page_says_who_in_neutral_words_never_the_tenant_id(
    env: ConnectEnv,
) -> None:
    # Given an agent added with no inviter name, by a token without the display-name claim (tenant "demo")
    invited = env.invite(tenant_name=None)
    # When a wrong password was tried and the link is opened again, or the mailbox connected
    invites.record_failed_password(env.repo, env.invites, invited.token)
    to_status(env, invited, S.FAILED, reason="auth_failed")
    fail_page = get(f"/connect/{invited.token}").body
    assert f"You were invited to connect <strong>{EMAIL}</strong> to a response-time" in fail_page
    assert "asking the person who invited you" in fail_page
    assert "ask the person who invited you to remove your mailbox" in fail_page
    env.repo.transition("demo", invited.agent_id, S.CONNECTING)
    env.repo.transition("demo", invited.agent_id, S.VERIFIED)
    done = get(f"/connect/{invited.token}/status").body
    assert "is now connected to the dashboard of the person who invited you." in done
    # Then no page names the tenant id (or a missing value)
    for body in (fail_page, done):
        text = body.replace(invited.token, "")
        assert "demo" not in text
        assert "None" not in text


def test_the_inviter_name_is_shown_as_text(env: ConnectEnv) -> None:
    invited = env.invite(tenant_name='Evil <script>alert(1)</script> & "Co"')
    body = get(f"/connect/{invited.token}").body
    assert "<script>alert(1)" not in body
    assert (
        "<strong>Evil &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;Co&#34;</strong> invited you" in body
    )


def test_opening_the_link_changes_nothing(env: ConnectEnv, invited: Invited) -> None:
    before = scan()
    for _ in range(3):
        assert get(f"/connect/{invited.token}").status == 200
        assert get(f"/connect/{invited.token}/status").status == 200
    assert scan() == before
    assert env.executions() == []


# -- 2. links that do not work ---------------------------------------------------------------------
def assert_link_problem(answer: Answer, status: int, text: str, *, new_invite_needed: bool = True) -> None:
    assert answer.status == status
    assert answer.headers["content-type"].startswith("text/html")
    assert_security_headers(answer)
    assert text in answer.body
    assert ("send a new invite" in answer.body) is new_invite_needed


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("token", [UNKNOWN_TOKEN, "short", "not*a*token" * 3, "x" * 101])
def test_an_unknown_or_malformed_link_is_a_404_page(token: str) -> None:
    assert_link_problem(get(f"/connect/{token}"), 404, "This link is not valid")


def test_an_unknown_link_answers_json_when_asked(env: ConnectEnv) -> None:
    answer = get(f"/connect/{UNKNOWN_TOKEN}/status", accept="application/json")
    assert answer.status == 404
    assert answer.json()["status"] == "link_invalid"


def test_an_expired_link_is_a_410_page(env: ConnectEnv, invited: Invited) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="milliseconds")
    boto3.client("dynamodb").update_item(
        TableName=TABLE_NAME,
        Key={"pk": {"S": f"INVITE#{token_hash(invited.token)}"}, "sk": {"S": "INVITE"}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"S": past.replace("+00:00", "Z")}},
    )
    assert_link_problem(get(f"/connect/{invited.token}"), 410, "This link has expired")


def test_a_link_replaced_by_a_resend_is_a_410_page(env: ConnectEnv, invited: Invited) -> None:
    invites.request_invite(env.repo, "demo", invited.agent_id)
    env.deliver()
    assert_link_problem(get(f"/connect/{invited.token}"), 410, "This link is no longer valid")


def test_a_used_link_is_a_410_page(env: ConnectEnv, invited: Invited) -> None:
    invites.consume_invite(env.repo, env.invites, invited.token)
    answer = get(f"/connect/{invited.token}")
    # The mailbox is connected: the page says so instead of sending the owner for a new invite.
    assert_link_problem(answer, 410, "This link was already used", new_invite_needed=False)
    assert "already connected" in answer.body


def test_a_locked_link_is_a_410_page(env: ConnectEnv, invited: Invited) -> None:
    while invites.record_failed_password(env.repo, env.invites, invited.token):
        pass
    assert_link_problem(get(f"/connect/{invited.token}"), 410, "This link is locked")


def test_posting_to_a_dead_link_is_the_same_page(env: ConnectEnv, invited: Invited) -> None:
    nonce = page_nonce(invited.token)
    invites.request_invite(env.repo, "demo", invited.agent_id)
    env.deliver()
    before = scan()
    answer = post(f"/connect/{invited.token}", credentials(nonce))
    assert_link_problem(answer, 410, "This link is no longer valid")
    assert scan() == before


# -- 3. the credentials ----------------------------------------------------------------------------
def test_a_valid_post_stores_the_password_and_starts_the_workflow(
    env: ConnectEnv, invited: Invited, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # botocore DEBUG logs request bodies; Lambda runs at INFO
    answer = submit(invited.token)

    assert answer.status == 303
    assert answer.headers["location"] == f"{BASE_URL}/connect/{invited.token}/status"
    assert_security_headers(answer)
    item = env.item(invited.agent_id)
    assert item["status"] == "connecting"
    assert item[Attr.ATTEMPT] == 1
    assert item[Attr.INVITE_HASH] == token_hash(invited.token)
    assert item["signIn"] == "password"  # the dashboard's word for how the mailbox is connected
    assert stored_password(invited.agent_id) == PASSWORD
    (execution,) = env.executions()
    described = env.sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {
        "tenantId": "demo",
        "agentId": invited.agent_id,
        "attempt": 1,
        "settingsTimeoutSeconds": 600,
        "method": "ews",
    }
    captured = capsys.readouterr()
    for place in (
        str(scan()),
        answer.body,
        str(answer.headers),
        described["input"],
        captured.out,
        captured.err,
    ):
        assert PASSWORD not in place
    assert PASSWORD not in caplog.text


def test_the_status_page_after_the_post_says_it_is_checking(env: ConnectEnv, invited: Invited) -> None:
    submit(invited.token)
    answer = get(f"/connect/{invited.token}/status")
    assert answer.status == 200
    assert 'data-status="connecting"' in answer.body
    assert '<meta http-equiv="refresh"' in answer.body
    assert get(f"/connect/{invited.token}").headers["location"].endswith("/status")


# -- 4. CSRF ---------------------------------------------------------------------------------------
def assert_refused(env: ConnectEnv, invited: Invited, answer: Answer, before: object) -> None:
    assert answer.status == 403
    assert_security_headers(answer)
    assert "Please try again" in answer.body
    assert scan() == before
    assert env.executions() == []


def _forged(nonce: str) -> str:
    issued, salt, mac = nonce.split(".")
    return f"{issued}.{salt}.{'0' * len(mac)}"


@pytest.mark.parametrize(
    "make_nonce",
    [
        pytest.param(lambda token, other: None, id="missing"),
        pytest.param(lambda token, other: "", id="empty"),
        pytest.param(lambda token, other: "garbage", id="malformed"),
        pytest.param(lambda token, other: "1.salt.é", id="non-ascii"),
        pytest.param(lambda token, other: _forged(page_nonce(token)), id="forged"),
        pytest.param(lambda token, other: pages.csrf_nonce(b"another key", token), id="other-key"),
        pytest.param(lambda token, other: page_nonce(other), id="other-token"),
        pytest.param(
            lambda token, other: pages.csrf_nonce(CSRF_KEY, token, now=time.time() - 3601), id="expired"
        ),
        pytest.param(
            lambda token, other: pages.csrf_nonce(CSRF_KEY, token, now=time.time() + 600), id="future"
        ),
    ],
)
def test_a_post_without_a_good_nonce_is_refused(
    env: ConnectEnv, invited: Invited, make_nonce: Callable[[str, str], str | None]
) -> None:
    other = env.invite(email="bob@contoso.com")  # another agent's link
    nonce = make_nonce(invited.token, other.token)
    form = credentials("")
    if nonce is None:
        del form["nonce"]
    else:
        form["nonce"] = nonce
    before = scan()
    assert_refused(env, invited, post(f"/connect/{invited.token}", form), before)


def test_a_nonce_made_with_the_real_key_now_is_accepted(env: ConnectEnv, invited: Invited) -> None:
    """The key of the test secret signs nonces like the page does (so the refusals above are real)."""
    nonce = pages.csrf_nonce(CSRF_KEY, invited.token)
    assert post(f"/connect/{invited.token}", credentials(nonce)).status == 303


@pytest.mark.parametrize(
    ("origin", "headers"),
    [
        ("https://evil.example.net", {}),
        ("http://connect.example.com", {}),
        ("https://connect.example.com.evil.net", {}),
        (BASE_URL, {"sec-fetch-site": "cross-site"}),
        (None, {"sec-fetch-site": "same-site"}),
    ],
)
def test_a_post_from_another_site_is_refused(
    env: ConnectEnv, invited: Invited, origin: str | None, headers: dict[str, str]
) -> None:
    form = credentials(page_nonce(invited.token))
    before = scan()
    assert_refused(env, invited, post(f"/connect/{invited.token}", form, origin=origin, **headers), before)


@pytest.mark.parametrize("origin", ["null", None])
def test_a_null_or_absent_origin_with_a_valid_nonce_is_accepted(
    env: ConnectEnv, invited: Invited, origin: str | None
) -> None:
    form = credentials(page_nonce(invited.token))
    answer = post(f"/connect/{invited.token}", form, origin=origin, **{"sec-fetch-site": "same-origin"})
    assert answer.status == 303
    assert len(env.executions()) == 1


# -- 5. validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"email": "not an email"}, "Email address"),
        ({"email": ""}, "Email address"),
        ({"password": ""}, "Password"),
        ({"password": "x" * 1025}, "Password"),
        ({"username": "just a name"}, "Username"),
        ({"username": "user@"}, "Username"),
        ({"username": "a\\b\\c"}, "Username"),
        ({"server": "not a server!"}, "Server"),
        ({"server": "https://"}, "Server"),
        ({"server": "-mail.example.com"}, "Server"),
        ({"server": "x" * 301}, "Server"),
    ],
)
def test_bad_input_is_a_422_page_naming_the_field(
    env: ConnectEnv, invited: Invited, fields: dict[str, str], named: str
) -> None:
    nonce = page_nonce(invited.token)
    before = scan()
    answer = post(f"/connect/{invited.token}", credentials(nonce, **fields))
    assert answer.status == 422
    assert_security_headers(answer)
    assert 'role="alert"' in answer.body
    assert f"{named}:" in answer.body
    assert nonce_of(answer.body)  # the form again, ready to resubmit
    assert scan() == before
    assert env.executions() == []


@pytest.mark.parametrize(
    ("pasted", "stored"),
    [
        ("https://Mail.Example.com/owa/", "mail.example.com"),
        ("  mail.example.com  ", "mail.example.com"),
        ("mail.example.com:443", "mail.example.com"),
        ("[2001:db8::1]", "[2001:db8::1]"),
    ],
)
def test_a_pasted_server_address_is_stored_as_the_host_name(
    env: ConnectEnv, invited: Invited, pasted: str, stored: str
) -> None:
    assert submit(invited.token, server=pasted, username="CONTOSO\\ann").status == 303
    item = env.item(invited.agent_id)
    assert item[Attr.SERVER] == stored
    assert item[Attr.USERNAME] == "CONTOSO\\ann"


def test_another_mailbox_is_a_400_naming_the_invited_one(env: ConnectEnv, invited: Invited) -> None:
    nonce = page_nonce(invited.token)
    before = scan()
    answer = post(f"/connect/{invited.token}", credentials(nonce, email="bob@contoso.com"))
    assert answer.status == 400
    assert f"This invite is for {EMAIL}" in answer.body
    assert scan() == before


def test_the_invited_mailbox_in_other_letter_case_is_accepted(env: ConnectEnv, invited: Invited) -> None:
    assert submit(invited.token, email=EMAIL.upper()).status == 303


# -- 6. racing submissions -------------------------------------------------------------------------
def test_of_two_submissions_only_the_first_starts_a_workflow(env: ConnectEnv, invited: Invited) -> None:
    """Given two tabs that both loaded the form while the agent was invited, when both post, then one
    workflow starts and the second lands on the status page."""
    first_nonce, second_nonce = page_nonce(invited.token), page_nonce(invited.token)
    first = post(f"/connect/{invited.token}", credentials(first_nonce))
    second = post(f"/connect/{invited.token}", credentials(second_nonce, password="another"))
    assert (first.status, second.status) == (303, 303)
    assert second.headers["location"] == first.headers["location"]
    assert len(env.executions()) == 1
    assert env.item(invited.agent_id)[Attr.ATTEMPT] == 1
    assert stored_password(invited.agent_id) == PASSWORD


def test_of_two_truly_racing_submissions_the_conditional_write_lets_one_through(
    env: ConnectEnv, invited: Invited, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a second submission that read the agent (invited) before the first one wrote, when it
    writes, then the conditional write refuses it: no second workflow, its password is not stored."""
    service = app._service()
    stale = service.view(invited.token)
    second_nonce = page_nonce(invited.token)
    assert submit(invited.token).status == 303
    real_view = service.view
    views = iter([stale])
    monkeypatch.setattr(service, "view", lambda token, **kw: next(views, None) or real_view(token, **kw))
    answer = post(f"/connect/{invited.token}", credentials(second_nonce, password="another"))
    assert answer.status == 303
    assert answer.headers["location"].endswith("/status")
    assert len(env.executions()) == 1
    assert env.item(invited.agent_id)[Attr.ATTEMPT] == 1
    assert stored_password(invited.agent_id) == PASSWORD


def test_a_retry_after_a_failure_starts_attempt_two(env: ConnectEnv, invited: Invited) -> None:
    submit(invited.token)
    env.repo.transition("demo", invited.agent_id, S.FAILED, reason="auth_failed")
    page = get(f"/connect/{invited.token}")
    assert page.status == 200
    answer = post(f"/connect/{invited.token}", credentials(nonce_of(page.body)))
    assert answer.status == 303
    assert env.item(invited.agent_id)[Attr.ATTEMPT] == 2
    assert len(env.executions()) == 2


# -- 7. status -------------------------------------------------------------------------------------
def status_json(token: str) -> dict[str, object]:
    answer = get(f"/connect/{token}/status", accept="application/json")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert_security_headers(answer)
    body: dict[str, object] = answer.json()
    assert set(body) == {"status", "reason", "message"}
    return body


def test_status_json_while_connecting(env: ConnectEnv, invited: Invited) -> None:
    submit(invited.token)
    assert status_json(invited.token) == {"status": "connecting", "reason": None, "message": ""}


def test_status_json_when_settings_are_needed(env: ConnectEnv, invited: Invited) -> None:
    to_status(env, invited, S.NEEDS_SETTINGS, reason="autodiscover_failed")
    body = status_json(invited.token)
    assert (body["status"], body["reason"]) == ("needs_settings", "autodiscover_failed")
    message = str(body["message"])
    assert message.endswith(".")
    assert message[0].isupper()
    assert "_" not in message


def test_status_json_after_a_wrong_password(env: ConnectEnv, invited: Invited) -> None:
    to_status(env, invited, S.FAILED, reason="auth_failed")
    body = status_json(invited.token)
    assert (body["status"], body["reason"]) == ("failed", "auth_failed")
    assert "password" in str(body["message"]).lower()


def test_the_status_page_shows_the_settings_form_when_needed(env: ConnectEnv, invited: Invited) -> None:
    to_status(env, invited, S.NEEDS_SETTINGS, reason="autodiscover_failed")
    answer = get(f"/connect/{invited.token}/status")
    assert answer.status == 200
    assert f'action="{BASE_URL}/connect/{invited.token}/settings"' in answer.body
    assert 'name="server"' in answer.body
    assert nonce_of(answer.body)
    assert 'http-equiv="refresh"' not in answer.body


def test_the_status_page_after_success_links_to_the_dashboard(env: ConnectEnv, invited: Invited) -> None:
    to_status(env, invited, S.VERIFIED)
    answer = get(f"/connect/{invited.token}/status")
    assert answer.status == 200
    assert "Your mailbox is connected" in answer.body
    assert f'href="{DASHBOARD_URL}"' in answer.body
    # It takes the owner back by itself after 5 seconds (no script needed: the CSP allows none inline).
    assert f'<meta http-equiv="refresh" content="5;url={DASHBOARD_URL}">' in answer.body
    assert "Taking you back to the dashboard in 5 seconds" in answer.body
    assert get(f"/connect/{invited.token}").status == 410  # the form itself is gone


# -- wrong passwords: the tries left before the link locks ------------------------------------------
def fail_with_wrong_passwords(env: ConnectEnv, invited: Invited, count: int, **attributes: str) -> None:
    """As the workflow does: each wrong password is counted on the invite, then the agent fails."""
    for _ in range(count):
        invites.record_failed_password(env.repo, env.invites, invited.token)
    to_status(env, invited, S.FAILED, reason="auth_failed", set_attributes=attributes or None)


def tries_left_of(body: str) -> str:
    start = body.index('id="tries-left">') + len('id="tries-left">')
    return " ".join(
        body[start : body.index("</p>", start)].replace("<strong>", "").replace("</strong>", "").split()
    )


def test_after_a_wrong_password_the_page_says_how_many_tries_are_left(
    env: ConnectEnv, invited: Invited
) -> None:
    fail_with_wrong_passwords(env, invited, 1)
    for page in (get(f"/connect/{invited.token}/status"), get(f"/connect/{invited.token}")):
        assert page.status == 200
        assert (
            tries_left_of(page.body)
            == f"{invites.MAX_FAILED_ATTEMPTS - 1} tries left before this link locks."
        )
        # The message names what the owner typed (the email address and a password), no username.
        assert f"did not accept the password for {EMAIL}" in page.body
        assert "username" not in page.body.split('id="tries-left"')[0].lower()


def test_before_the_last_try_the_page_warns_that_the_next_wrong_password_locks_the_link(
    env: ConnectEnv, invited: Invited
) -> None:
    fail_with_wrong_passwords(env, invited, invites.MAX_FAILED_ATTEMPTS - 1)
    page = get(f"/connect/{invited.token}/status")
    assert tries_left_of(page.body).startswith("Last try: one more wrong password locks this link")
    assert "Contoso Ltd would have to send you a new invite" in tries_left_of(page.body)


def test_a_wrong_password_with_a_typed_username_names_the_username(env: ConnectEnv, invited: Invited) -> None:
    fail_with_wrong_passwords(env, invited, 1, **{Attr.USERNAME: "CONTOSO\\ann"})
    page = get(f"/connect/{invited.token}/status")
    assert "did not accept this username and password" in page.body


def test_an_email_address_refused_by_a_server_that_named_its_domain_offers_the_windows_sign_in(
    env: ConnectEnv, invited: Invited
) -> None:
    # Given the workflow kept the login the server's Windows domain suggests (MTCORP, not the email's domain)
    fail_with_wrong_passwords(env, invited, 0, **{Attr.LOGIN_HINT: "MTCORP\\ann"})
    # Then the failure page, and the form offered again, say either could be the cause, with one button
    for page in (get(f"/connect/{invited.token}/status"), get(f"/connect/{invited.token}")):
        assert page.status == 200
        assert (
            f"did not accept the password for {EMAIL} with your email address as the login. Either the "
            "password is wrong, or the server wants its Windows sign-in, MTCORP\\ann, instead" in page.body
        )
        assert page.body.count('id="suggested-login"') == 1
        assert ">Sign in as MTCORP\\ann</button>" in page.body
        assert 'name="username" value=""' in page.body  # nothing filled in before the owner asks
        assert "<details open>" not in page.body


def get_with_query(path: str, query: dict[str, str] | None) -> Answer:
    """A browser's GET of the page, with a query string."""
    event = event_for("GET", path, query=query)
    event["headers"] = {**event.get("headers", {}), "accept": "text/html,application/xhtml+xml"}
    return call(event)


@pytest.mark.parametrize("path", ["/status", ""])
def test_the_suggested_login_button_without_javascript_fills_in_the_username_and_opens_the_settings(
    env: ConnectEnv, invited: Invited, path: str
) -> None:
    fail_with_wrong_passwords(env, invited, 0, **{Attr.LOGIN_HINT: "MTCORP\\ann"})
    # When the owner presses the button (a GET of the same page with ?login=suggested)
    page = get_with_query(f"/connect/{invited.token}{path}", {"login": "suggested"})
    # Then the form has the Windows sign-in as the username, the advanced settings open, the password focused
    assert page.status == 200
    assert 'name="username" value="MTCORP\\ann"' in page.body
    assert "<details open>" in page.body
    assert re.search(r'<input type="password" id="password"[^>]* autofocus>', page.body)
    assert 'id="suggested-login-applied"' in page.body
    assert 'id="suggested-login"' not in page.body


@pytest.mark.parametrize(
    ("hint", "username"),
    [
        ("DOMAIN\\ann", None),  # the server named no Windows domain: nothing to go on
        (None, None),  # no hint at all (e.g. a DOMAIN\\user login was refused)
        (None, "CONTOSO\\ann"),
    ],
)
def test_without_a_domain_named_by_the_server_no_login_is_suggested(
    env: ConnectEnv, invited: Invited, hint: str | None, username: str | None
) -> None:
    attributes = {k: v for k, v in {Attr.LOGIN_HINT: hint, Attr.USERNAME: username}.items() if v}
    fail_with_wrong_passwords(env, invited, 1, **attributes)
    for query in (None, {"login": "suggested"}):
        page = get_with_query(f"/connect/{invited.token}/status", query)
        assert 'id="suggested-login' not in page.body
        assert "DOMAIN\\" not in page.body.split('id="tries-left"')[0]
        assert "Either the password is wrong" not in page.body
        assert "<details open>" not in page.body


def test_other_failures_count_no_tries(env: ConnectEnv, invited: Invited) -> None:
    to_status(env, invited, S.FAILED, reason="unreachable")
    assert 'id="tries-left"' not in get(f"/connect/{invited.token}/status").body


def test_the_first_ask_for_settings_is_a_note_and_a_second_one_an_alert(
    env: ConnectEnv, invited: Invited
) -> None:
    to_status(env, invited, S.NEEDS_SETTINGS, reason="autodiscover_failed")
    routine = get(f"/connect/{invited.token}/status").body
    assert 'class="note"' in routine
    assert 'role="alert"' not in routine
    assert "Open the advanced settings" not in routine  # they are the form on this page
    env.repo.transition("demo", invited.agent_id, S.CONNECTING)
    env.repo.transition("demo", invited.agent_id, S.NEEDS_SETTINGS, reason="unreachable")
    problem = get(f"/connect/{invited.token}/status").body
    assert 'class="alert" role="alert"' in problem
    assert "could not reach your email server" in problem


def test_the_password_form_tells_what_is_kept_of_the_password_and_how_to_remove_it(invited: Invited) -> None:
    page = get(f"/connect/{invited.token}").body
    promise = page[page.index('id="password-promise"') :]
    assert "We keep your password, encrypted" in promise
    assert "If the connection does not succeed, we delete it." in promise
    assert "ask Contoso Ltd to remove your mailbox from their dashboard to have it deleted" in promise


def test_the_status_page_after_a_failure_offers_the_form_again(env: ConnectEnv, invited: Invited) -> None:
    to_status(env, invited, S.FAILED, reason="auth_failed")
    answer = get(f"/connect/{invited.token}/status")
    assert "We could not connect your mailbox" in answer.body
    assert f'action="{BASE_URL}/connect/{invited.token}"' in answer.body
    assert 'http-equiv="refresh"' not in answer.body


# -- 8. the settings form --------------------------------------------------------------------------
def settings_form(token: str, **fields: str) -> dict[str, str]:
    nonce = pages.csrf_nonce(CSRF_KEY, token)  # as the settings form carries it
    return {"nonce": nonce, "server": "mail.contoso.com", "username": "", "password": "", **fields}


def test_settings_for_a_wait_that_is_over_mark_the_agent_failed(
    env: ConnectEnv, invited: Invited, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given an agent waiting for settings whose task token Step Functions no longer knows (the wait
    timed out), when the owner sends settings, then the agent is failed with settings_timeout instead of
    spinning. (moto's non-executing backend accepts any token; its executing one answers InvalidToken,
    as AWS does.)"""
    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})
    to_status(env, invited, S.NEEDS_SETTINGS, reason="autodiscover_failed")
    env.repo.update_attributes(
        "demo", invited.agent_id, {Attr.TASK_TOKEN: "no-such-task-token"}, expected_status=S.NEEDS_SETTINGS
    )
    answer = post(f"/connect/{invited.token}/settings", settings_form(invited.token, username="CONTOSO\\ann"))
    assert answer.status == 303
    assert answer.headers["location"] == f"{BASE_URL}/connect/{invited.token}/status"
    item = env.item(invited.agent_id)
    assert (item["status"], item.get("statusReason")) == ("failed", "settings_timeout")
    assert (item[Attr.SERVER], item[Attr.USERNAME]) == ("mail.contoso.com", "CONTOSO\\ann")
    assert Attr.TASK_TOKEN not in item
    assert "enter your details again" in str(status_json(invited.token)["message"]).lower()


def test_settings_when_no_task_token_is_stored_mark_the_agent_failed(
    env: ConnectEnv, invited: Invited
) -> None:
    """Given an agent in needs_settings without a task token (nothing to resume), when settings arrive,
    then the agent fails with settings_timeout rather than staying `connecting` with no workflow."""
    to_status(env, invited, S.NEEDS_SETTINGS, reason="autodiscover_failed")
    answer = post(f"/connect/{invited.token}/settings", settings_form(invited.token))
    assert answer.status == 303
    item = env.item(invited.agent_id)
    assert (item["status"], item.get("statusReason")) == ("failed", "settings_timeout")


def test_settings_with_a_new_password_replace_the_stored_one(env: ConnectEnv, invited: Invited) -> None:
    submit(invited.token)
    env.repo.transition("demo", invited.agent_id, S.NEEDS_SETTINGS, reason="autodiscover_failed")
    env.repo.update_attributes(
        "demo", invited.agent_id, {Attr.TASK_TOKEN: "no-such-task-token"}, expected_status=S.NEEDS_SETTINGS
    )
    post(f"/connect/{invited.token}/settings", settings_form(invited.token, password="N3w-password"))
    assert stored_password(invited.agent_id) == "N3w-password"


def test_bad_settings_are_a_422_with_the_settings_form(env: ConnectEnv, invited: Invited) -> None:
    to_status(env, invited, S.NEEDS_SETTINGS, reason="autodiscover_failed")
    form = settings_form(invited.token, server="")
    before = scan()
    answer = post(f"/connect/{invited.token}/settings", form)
    assert answer.status == 422
    assert "Server:" in answer.body
    assert f'action="{BASE_URL}/connect/{invited.token}/settings"' in answer.body
    assert scan() == before


@pytest.mark.parametrize("status", [S.CONNECTING, S.FAILED])
def test_settings_when_none_are_asked_go_to_the_status_page(
    env: ConnectEnv, invited: Invited, status: AgentStatus
) -> None:
    to_status(env, invited, status, reason="auth_failed" if status is S.FAILED else None)
    form = settings_form(invited.token)
    before = scan()
    answer = post(f"/connect/{invited.token}/settings", form)
    assert answer.status == 303
    assert answer.headers["location"] == f"{BASE_URL}/connect/{invited.token}/status"
    assert scan() == before


def test_settings_without_a_good_nonce_are_refused(env: ConnectEnv, invited: Invited) -> None:
    to_status(env, invited, S.NEEDS_SETTINGS, reason="autodiscover_failed")
    before = scan()
    form = settings_form(invited.token, nonce="1.2.3")
    assert_refused(env, invited, post(f"/connect/{invited.token}/settings", form), before)


# -- 9. escaping -----------------------------------------------------------------------------------
def test_markup_in_names_is_escaped(env: ConnectEnv) -> None:
    invited = env.invite(name="<script>alert(1)</script>", tenant_name="<script>alert(2)</script> & Co")
    answer = get(f"/connect/{invited.token}")
    assert answer.status == 200
    assert "<script>alert" not in answer.body
    assert "&lt;script&gt;alert(2)&lt;/script&gt; &amp; Co" in answer.body


# -- 10. static files ------------------------------------------------------------------------------
@pytest.mark.usefixtures("env")
@pytest.mark.parametrize(
    ("name", "content_type"), [("connect.css", "text/css"), ("connect.js", "text/javascript")]
)
def test_the_stylesheet_and_script_are_served(name: str, content_type: str) -> None:
    answer = get(f"/connect-static/{name}")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith(content_type)
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.body


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("name", ["other.js", "..%2Fpages.py", "connect.html", "__init__.py"])
def test_any_other_static_file_is_404(name: str) -> None:
    assert get(f"/connect-static/{name}").status == 404


# -- 9. a server in another domain: the owner allows it, or not ----------------------------------------
def waiting_for_permission(env: ConnectEnv, invited: Invited, host: str = "mail.hoster.test") -> None:
    submit(invited.token)
    env.repo.transition("demo", invited.agent_id, S.NEEDS_SETTINGS, reason="confirm_server")
    env.repo.update_attributes(
        "demo",
        invited.agent_id,
        {Attr.TASK_TOKEN: "a-task-token", Attr.CONFIRM_HOST: host},
        expected_status=S.NEEDS_SETTINGS,
    )


def test_the_status_page_names_the_server_waiting_for_permission(env: ConnectEnv, invited: Invited) -> None:
    waiting_for_permission(env, invited)
    answer = get(f"/connect/{invited.token}/status")
    assert "Allow mail.hoster.test" in answer.body
    assert f'action="{BASE_URL}/connect/{invited.token}/allow"' in answer.body
    assert f'action="{BASE_URL}/connect/{invited.token}/settings"' in answer.body  # or enter the settings


def test_allowing_the_named_server_resumes_the_workflow_with_it(env: ConnectEnv, invited: Invited) -> None:
    waiting_for_permission(env, invited)
    nonce = pages.csrf_nonce(CSRF_KEY, invited.token)
    answer = post(f"/connect/{invited.token}/allow", {"nonce": nonce, "host": "MAIL.hoster.test"})
    assert answer.status == 303
    item = env.item(invited.agent_id)
    assert item["status"] == "connecting"
    assert item[Attr.CONFIRMED_HOST] == "mail.hoster.test"
    assert Attr.CONFIRM_HOST not in item
    assert Attr.TASK_TOKEN not in item


@pytest.mark.parametrize("host", ["evil.example", "mail.hoster.test.evil.example"])
def test_only_the_named_server_can_be_allowed(env: ConnectEnv, invited: Invited, host: str) -> None:
    waiting_for_permission(env, invited)
    before = scan()
    nonce = pages.csrf_nonce(CSRF_KEY, invited.token)
    answer = post(f"/connect/{invited.token}/allow", {"nonce": nonce, "host": host})
    assert answer.status == 303
    assert scan() == before


def test_allowing_without_the_form_nonce_is_refused(env: ConnectEnv, invited: Invited) -> None:
    waiting_for_permission(env, invited)
    before = scan()
    answer = post(f"/connect/{invited.token}/allow", {"nonce": "forged", "host": "mail.hoster.test"})
    assert answer.status == 403
    assert scan() == before


def test_the_report_download_is_plain_text_without_secrets(env: ConnectEnv, invited: Invited) -> None:
    from onboarding.exchange.trace import TraceRecorder

    waiting_for_permission(env, invited)
    trace = TraceRecorder("hoster.test")
    trace.mask_also("Sup3r-Secret")
    trace.add("http", url="https://mail.hoster.test/autodiscover/autodiscover.svc?x=Sup3r-Secret", status=401)
    trace.verdict = "confirm_server"
    env.repo.update_attributes(
        "demo",
        invited.agent_id,
        {Attr.EXCHANGE_TRACE: trace.snapshot().model_dump_json()},
        expected_status=S.NEEDS_SETTINGS,
    )
    answer = get(f"/connect/{invited.token}/report.txt")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "attachment" in answer.headers["content-disposition"]
    assert "https://mail.hoster.test/autodiscover/autodiscover.svc HTTP 401" in answer.body
    assert "Sup3r-Secret" not in answer.body
    assert "Details for your IT admin" in get(f"/connect/{invited.token}/status").body
