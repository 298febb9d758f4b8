"""The connect page's "Sign in with Microsoft": routing before the password, the POST that starts the
flow, the callback (state single use, bound to invite and browser), the outcome pages. Microsoft is the
identity platform simulator; AWS is moto."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import boto3
import pytest

from devstack.identity_sim import IdentitySimulator
from onboarding import deps
from onboarding.agents.models import AgentStatus, Attr
from onboarding.core.credentials import KmsCredentialStore
from onboarding.m365.oauth import digest
from tests.conftest import CREDENTIALS_TABLE, api_event, stored_secrets
from tests.connect_helpers import (
    PASSWORD,
    Answer,
    ConnectEnv,
    Invited,
    call,
    connect_environment,
    credentials,
    event_for,
    get,
    nonce_of,
    post,
    scan,
)
from tests.invite_helpers import BASE_URL
from tests.m365_fixtures import REDIRECT_URI, Person, point_functions_at

CALLBACK = f"{BASE_URL}/connect/oauth/callback"
COOKIE = re.compile(r"m365_signin=([^;]*)")


@pytest.fixture
def sim(identity_sim: IdentitySimulator) -> IdentitySimulator:
    identity_sim.register_app(
        client_id=identity_sim.client_id,
        client_secret=identity_sim.client_secret,
        redirect_uris=[REDIRECT_URI, CALLBACK],
    )
    return identity_sim


@pytest.fixture
def env(moto_aws: None, monkeypatch: pytest.MonkeyPatch, sim: IdentitySimulator) -> Iterator[ConnectEnv]:
    with connect_environment(monkeypatch) as connect_env:
        point_functions_at(sim, monkeypatch, M365_TOKEN_TIMEOUT="1")
        yield connect_env


def invite(env: ConnectEnv, email: str) -> Invited:
    return env.invite(email=email, name="Owner")


def open_page(token: str, provider: str | None = None) -> Answer:
    """GET /connect/{token} (optionally ?provider=...), as a browser asks for it."""
    event = event_for("GET", f"/connect/{token}", query={"provider": provider} if provider else None)
    event["headers"] = {**event.get("headers", {}), "accept": "text/html"}
    return call(event)


# -- requests of the new routes --------------------------------------------------------------------
def start_event(token: str, nonce: str | None = None) -> dict[str, Any]:
    """The form post of "Sign in with Microsoft" (with the nonce of a fresh view of the page)."""
    nonce = nonce or nonce_of(open_page(token, "m365").body)
    event = api_event(
        "POST",
        f"/connect/{token}/microsoft",
        tenant=None,
        route="/connect/{token}/microsoft",
        path_params={"token": token},
        raw_body=urlencode({"nonce": nonce}),
    )
    event["headers"] = {
        **event["headers"],
        "content-type": "application/x-www-form-urlencoded",
        "origin": BASE_URL,
    }
    return event


def start(token: str, nonce: str | None = None) -> Answer:
    return call(start_event(token, nonce))


def call_with_cookies(event: dict[str, Any]) -> tuple[Answer, list[str]]:
    from functions.auth_callback import app
    from tests.conftest import LambdaContext

    response = app.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return Answer(response["statusCode"], headers, response.get("body") or ""), list(
        response.get("cookies") or []
    )


# Powertools puts cookies in the v2 response's `cookies` list; read them from there.
def start_with_cookie(token: str) -> tuple[str, str, list[str]]:
    answer, cookies = call_with_cookies(start_event(token))
    assert answer.status == 303, answer.body
    (value,) = [c for c in cookies if c.startswith("m365_signin=")]
    return answer.headers["location"], COOKIE.search(value).group(1), cookies  # type: ignore[union-attr]


def finish(params: dict[str, str], cookie: str | None) -> tuple[Answer, list[str]]:
    event = api_event(
        "GET", "/connect/oauth/callback", tenant=None, route="/connect/oauth/callback", query=params
    )
    event["headers"] = {**event["headers"], "accept": "text/html"}
    if cookie is not None:
        event["cookies"] = [f"m365_signin={cookie}"]
    return call_with_cookies(event)


def reason_of(answer: Answer) -> str:
    found = re.search(r'data-reason="([^"]+)"', answer.body)
    assert found, answer.body
    return found.group(1)


# -- 1. routing before the password ----------------------------------------------------------------
def test_a_microsoft_365_invite_opens_on_sign_in_with_microsoft_without_a_password_field(
    env: ConnectEnv, sim: IdentitySimulator
) -> None:
    invited = invite(env, "mia@m365.test")
    page = open_page(invited.token)
    assert page.status == 200
    assert "Sign in with Microsoft" in page.body
    assert f'action="{BASE_URL}/connect/{invited.token}/microsoft"' in page.body
    assert 'name="password"' not in page.body
    text = re.sub(r"<[^>]+>", "", page.body)  # the words as shown
    assert "Microsoft 365 (work or school account)" in text
    assert "Microsoft Exchange (on-premises)" in text
    # The realm lookup was the only request to Microsoft, and carried no credentials.
    assert [r.path for r in sim.requests_seen] == ["/common/userrealm/mia@m365.test"]


def test_an_exchange_invite_opens_on_the_password_form_with_the_microsoft_365_choice(
    env: ConnectEnv, sim: IdentitySimulator
) -> None:
    invited = invite(env, "ann@contoso.com")
    page = open_page(invited.token)
    assert 'name="password"' in page.body
    assert "Microsoft 365 (work or school account)" in page.body
    assert f"/connect/{invited.token}/microsoft" not in page.body


def test_the_owner_can_choose_the_other_provider(env: ConnectEnv) -> None:
    invited = invite(env, "mia@m365.test")
    page = open_page(invited.token, "exchange")
    assert 'name="password"' in page.body


def test_without_an_entra_app_the_page_is_the_exchange_form(
    env: ConnectEnv, sim: IdentitySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("M365_CLIENT_ID", "")
    deps.reset()
    invited = invite(env, "mia@m365.test")
    page = open_page(invited.token)
    assert 'name="password"' in page.body
    assert "Microsoft 365 (work or school account)" not in page.body
    assert sim.requests_seen == []


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every byte this process writes to a socket, in clear text (TLS is recorded before encryption)."""
    sent: list[bytes] = []
    for cls in (socket.socket, ssl.SSLSocket):
        for name in ("send", "sendall"):
            original = getattr(cls, name)

            def spy(self: Any, data: Any, *args: Any, _original: Any = original) -> Any:
                sent.append(bytes(data))
                return _original(self, data, *args)

            monkeypatch.setattr(cls, name, spy)
    return sent


@pytest.mark.parametrize("server", ["", "outlook.office365.com"])
def test_a_password_typed_for_a_microsoft_365_mailbox_is_never_sent_or_stored(
    env: ConnectEnv, sim: IdentitySimulator, wire: list[bytes], server: str
) -> None:
    # Given a Microsoft 365 invite and its owner on the Exchange form
    invited = invite(env, "mia@m365.test")
    nonce = nonce_of(open_page(invited.token, "exchange").body)
    # When they post their password (with no server, or an Exchange Online server)
    answer = post(f"/connect/{invited.token}", credentials(nonce, email="mia@m365.test", server=server))
    # Then the page offers Sign in with Microsoft, nothing was stored or started
    assert answer.status == 400
    assert "Sign in with Microsoft" in answer.body
    assert "was not stored or sent" in answer.body
    assert env.item(invited.agent_id)["status"] == "invited"
    assert env.executions() == []
    assert stored_secrets(invited.agent_id) == []
    assert PASSWORD not in str(scan())
    # And no request carrying the password left the process
    if not server:
        assert wire, "the realm lookup went over a socket (the spy sees it)"
    assert not any(PASSWORD.encode() in chunk for chunk in wire)
    assert not any(r.password for r in sim.requests_seen)


def test_an_owner_naming_an_on_premises_server_keeps_the_exchange_path(env: ConnectEnv) -> None:
    # A hybrid organisation: the domain is in Entra ID, the mailbox on their own Exchange server.
    invited = invite(env, "mia@m365.test")
    nonce = nonce_of(open_page(invited.token, "exchange").body)
    answer = post(
        f"/connect/{invited.token}", credentials(nonce, email="mia@m365.test", server="mail.m365.test")
    )
    assert answer.status == 303
    assert env.item(invited.agent_id)["status"] == "connecting"


# -- 2. the flow ------------------------------------------------------------------------------------
def test_sign_in_redeems_the_code_stores_the_refresh_token_and_starts_the_workflow(
    env: ConnectEnv, sim: IdentitySimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    invited = invite(env, "mia@m365.test")
    # When the owner presses the button
    authorize, cookie, cookies = start_with_cookie(invited.token)
    # Then the browser goes to Microsoft with a cookie for the callback only
    assert authorize.startswith(f"{sim.authority_host}/organizations/oauth2/v2.0/authorize?")
    (set_cookie,) = cookies
    assert "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie
    assert "Secure" in set_cookie
    assert "Path=/connect/oauth/callback" in set_cookie
    query = parse_qs(urlsplit(authorize).query)
    assert query["login_hint"] == ["mia@m365.test"]
    assert query["redirect_uri"] == [CALLBACK]
    state = query["state"][0]
    # And the flow is kept server-side, keyed by a hash of the state; the browser has no verifier
    flows = [i for i in scan() if i["pk"]["S"].startswith("OAUTH#")]
    assert [i["pk"]["S"] for i in flows] == [f"OAUTH#{digest(state)}"]
    assert "code_verifier" not in authorize
    assert "code_verifier" not in cookie

    # When Microsoft sends the browser back
    answer, forget = finish(Person(sim).sign_in(authorize, "mia@m365.test"), cookie)

    # Then the status page follows the check; the cookie is cleared; the flow item is gone
    assert answer.status == 303
    assert answer.headers["location"] == f"{BASE_URL}/connect/{invited.token}/status"
    assert any(c.startswith("m365_signin=;") or "Max-Age=0" in c for c in forget)
    assert not [i for i in scan() if i["pk"]["S"].startswith("OAUTH#")]
    item = env.item(invited.agent_id)
    assert item["status"] == "connecting"
    assert item[Attr.VERIFY_METHOD] == "graph"
    assert item["signIn"] == "microsoft"  # the dashboard says "its Microsoft sign-in", not "its password"
    (execution,) = env.executions()
    described = env.sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {
        "tenantId": "demo",
        "agentId": invited.agent_id,
        "attempt": 1,
        "settingsTimeoutSeconds": 600,
        "method": "graph",
    }
    # And the refresh token is sealed in the credentials table (what the verification unseals)
    sealed = KmsCredentialStore(CREDENTIALS_TABLE, os.environ["CREDENTIALS_KEY_ARN"])
    refresh_token = sealed.get("demo", invited.agent_id, purpose="refresh_token").get_secret_value()
    assert refresh_token
    assert refresh_token not in str(stored_secrets(invited.agent_id))
    # The refresh token is nowhere else: not in DynamoDB, the workflow input, the pages or the logs
    captured = capsys.readouterr()
    for place in (
        str(scan()),
        described["input"],
        answer.body,
        str(answer.headers),
        captured.out,
        captured.err,
    ):
        assert refresh_token not in place


def test_a_replayed_callback_is_refused_and_starts_nothing(env: ConnectEnv, sim: IdentitySimulator) -> None:
    invited = invite(env, "mia@m365.test")
    authorize, cookie, _ = start_with_cookie(invited.token)
    params = Person(sim).sign_in(authorize, "mia@m365.test")
    first, _ = finish(params, cookie)
    assert first.status == 303
    sim.reset_observations()
    again, _ = finish(params, cookie)
    assert again.status in (303, 400)
    assert len(env.executions()) == 1
    # The code was not sent to Microsoft a second time.
    assert not [r for r in sim.requests_seen if r.path.endswith("/token")]


def test_a_state_from_another_browser_is_refused_before_the_code_is_redeemed(
    env: ConnectEnv, sim: IdentitySimulator
) -> None:
    invited = invite(env, "mia@m365.test")
    authorize, _cookie, _ = start_with_cookie(invited.token)
    params = Person(sim).sign_in(authorize, "mia@m365.test")
    sim.reset_observations()
    forged_cookie = f"{'x' * 43}.{invited.token}"
    answer, _ = finish(params, forged_cookie)
    assert answer.status == 400
    assert reason_of(answer) == "m365_sign_in_invalid"
    assert not [r for r in sim.requests_seen if r.path.endswith("/token")]
    assert env.item(invited.agent_id)["status"] == "invited"
    # Without any cookie (a link opened elsewhere): the same
    answer, _ = finish(params, None)
    assert reason_of(answer) == "m365_sign_in_invalid"


def test_a_foreign_browser_holding_the_state_cannot_cancel_the_owners_sign_in(
    env: ConnectEnv, sim: IdentitySimulator
) -> None:
    # Given the owner's sign-in under way, and someone who learnt its state (and code) with a cookie of their own
    invited = invite(env, "mia@m365.test")
    authorize, cookie, _ = start_with_cookie(invited.token)
    params = Person(sim).sign_in(authorize, "mia@m365.test")
    for forged in (f"{'x' * 43}.{invited.token}", f"{cookie.partition('.')[0][:-1]}y.{invited.token}"):
        answer, _ = finish(params, forged)
        assert reason_of(answer) == "m365_sign_in_invalid"
    # When the owner's own browser comes back from Microsoft, Then the sign-in goes through
    answer, _ = finish(params, cookie)
    assert answer.status == 303
    assert len(env.executions()) == 1


def test_a_state_of_another_invite_is_refused(env: ConnectEnv, sim: IdentitySimulator) -> None:
    mia = invite(env, "mia@m365.test")
    grace = invite(env, "grace@m365.test")
    _, mia_cookie, _ = start_with_cookie(mia.token)
    grace_authorize, _, _ = start_with_cookie(grace.token)
    params = Person(sim).sign_in(grace_authorize, "grace@m365.test")
    # The browser's secret from Mia's invite, Grace's state and invite token
    secret = mia_cookie.partition(".")[0]
    answer, _ = finish(params, f"{secret}.{grace.token}")
    assert reason_of(answer) == "m365_sign_in_invalid"
    answer, _ = finish(params, mia_cookie)  # or Mia's whole cookie
    assert reason_of(answer) in {"m365_sign_in_invalid", "m365_sign_in_expired"}
    assert env.executions() == []


def test_a_tampered_state_finds_no_sign_in(env: ConnectEnv, sim: IdentitySimulator) -> None:
    invited = invite(env, "mia@m365.test")
    authorize, cookie, _ = start_with_cookie(invited.token)
    params = Person(sim).sign_in(authorize, "mia@m365.test")
    answer, _ = finish({**params, "state": params["state"] + "x"}, cookie)
    assert answer.status == 400
    assert reason_of(answer) == "m365_sign_in_expired"
    assert "Sign in with Microsoft" in answer.body  # the way forward: start again


def test_the_start_needs_the_form_nonce(env: ConnectEnv) -> None:
    invited = invite(env, "mia@m365.test")
    answer = start(invited.token, nonce="1.2.3")
    assert answer.status == 403
    assert not [i for i in scan() if i["pk"]["S"].startswith("OAUTH#")]


# -- 4. outcomes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "consent", "reason", "text"),
    [
        ("mia@m365.test", "cancel", "m365_consent_declined", "You did not allow access"),
        ("ben@strict-m365.test", "accept", "m365_admin_consent_required", "IT department needs to approve"),
        ("carl@m365.test", "accept", "m365_conditional_access_blocked", "blocked this sign-in"),
        ("dan@m365.test", "accept", "m365_account_disabled", "Your account is disabled"),
        ("tom@m365.test", "accept", "m365_timeout", "did not answer in time"),
    ],
)
def test_each_sign_in_outcome_has_its_own_page_with_a_way_forward(
    env: ConnectEnv, sim: IdentitySimulator, address: str, consent: str, reason: str, text: str
) -> None:
    invited = invite(env, address)
    authorize, cookie, _ = start_with_cookie(invited.token)
    answer, _ = finish(Person(sim).answer(authorize, address, consent), cookie)
    assert answer.status == 200
    assert reason_of(answer) == reason
    assert text in answer.body
    # A way forward: sign in again from the same invite; nothing was started or stored
    assert f"/connect/{invited.token}/microsoft" in answer.body
    assert env.item(invited.agent_id)["status"] == "invited"
    assert env.executions() == []


def test_the_admin_consent_page_gives_the_link_to_forward_to_it(
    env: ConnectEnv, sim: IdentitySimulator
) -> None:
    invited = invite(env, "ben@strict-m365.test")
    authorize, cookie, _ = start_with_cookie(invited.token)
    answer, _ = finish(Person(sim).answer(authorize, "ben@strict-m365.test"), cookie)
    link = re.search(r'id="admin-consent-link" href="([^"]+)"', answer.body)
    assert link
    url = link.group(1).replace("&amp;", "&")
    assert url.startswith(f"{sim.authority_host}/strict-m365.test/adminconsent?")
    query = parse_qs(urlsplit(url).query)
    assert {k: v for k, v in query.items() if k != "state"} == {
        "client_id": [sim.client_id],
        "redirect_uri": [CALLBACK],
    }
    assert query["state"][0]  # binds Microsoft's answer to a link we issued


def _admin_consent_link(env: ConnectEnv, sim: IdentitySimulator) -> str:
    invited = invite(env, "ben@strict-m365.test")
    authorize, cookie, _ = start_with_cookie(invited.token)
    answer, _ = finish(Person(sim).answer(authorize, "ben@strict-m365.test"), cookie)
    link = re.search(r'id="admin-consent-link" href="([^"]+)"', answer.body)
    assert link
    return link.group(1).replace("&amp;", "&")


def test_microsoft_returning_an_admins_consent_thanks_them(env: ConnectEnv, sim: IdentitySimulator) -> None:
    # Given the admin-consent link we gave Ben to forward, used by his organisation's administrator
    params = Person(sim).answer(_admin_consent_link(env, sim), "admin@strict-m365.test")
    assert params["admin_consent"] == "True"
    # When Microsoft sends the administrator back to us, Then the page says the app is approved
    answer, _ = finish(params, None)
    assert answer.status == 200
    assert "the app is approved" in answer.body


@pytest.mark.parametrize(
    "params",
    [
        {"admin_consent": "True", "tenant": "9c2d4b17-3e5a-4f81-b6c0-7a8e1d2f3b45"},
        {"admin_consent": "True", "state": "made-up"},
        {"admin_consent": "True", "state": f"{int(time.time())}.salt.{'0' * 64}"},
    ],
    ids=["no-state", "made-up-state", "forged-state"],
)
def test_an_admin_consent_answer_we_did_not_ask_for_is_not_shown_as_an_approval(
    env: ConnectEnv, params: dict[str, str]
) -> None:
    answer, _ = finish(params, None)
    assert answer.status == 200
    assert "the app is approved" not in answer.body
    assert "We could not confirm this answer" in answer.body


def test_a_graph_verdict_shows_its_outcome_on_the_status_page(env: ConnectEnv) -> None:
    invited = invite(env, "mia@m365.test")
    env.repo.transition(
        "demo", invited.agent_id, AgentStatus.CONNECTING,
        set_attributes={Attr.VERIFY_METHOD: "graph", Attr.ATTEMPT: 1, Attr.INVITE_HASH: digest(invited.token)},
    )  # fmt: skip
    env.repo.update_attributes(
        "demo",
        invited.agent_id,
        {Attr.M365_SIGNED_IN_AS: "olivia.hart@m365.test"},
        expected_status=AgentStatus.CONNECTING,
    )
    env.repo.transition("demo", invited.agent_id, AgentStatus.FAILED, reason="m365_wrong_account")
    page = get(f"/connect/{invited.token}/status")
    assert reason_of(page) == "m365_wrong_account"
    assert "You signed in as olivia.hart@m365.test; this invite is for mia@m365.test." in page.body
    assert f"/connect/{invited.token}/microsoft" in page.body
    status = get(f"/connect/{invited.token}/status", accept="application/json").json()
    assert status["reason"] == "m365_wrong_account"
    assert "olivia.hart@m365.test" in status["message"]


def test_an_exchange_verdict_of_modern_auth_offers_sign_in_with_microsoft(env: ConnectEnv) -> None:
    # Autodiscovery led to Exchange Online (a server that accepts only OAuth): the retry is with Microsoft.
    invited = invite(env, "ann@contoso.com")
    env.repo.transition("demo", invited.agent_id, AgentStatus.CONNECTING, set_attributes={Attr.ATTEMPT: 1})
    env.repo.transition("demo", invited.agent_id, AgentStatus.FAILED, reason="modern_auth_required")
    page = get(f"/connect/{invited.token}/status")
    assert "Microsoft 365" in page.body
    assert f"/connect/{invited.token}/microsoft" in page.body
    assert 'name="password"' not in page.body


def test_a_sign_in_that_took_longer_than_its_ttl_is_expired(env: ConnectEnv, sim: IdentitySimulator) -> None:
    # Given a started sign-in whose state has outlived its TTL (DynamoDB's TTL deletes lazily, so the
    # callback checks the expiry itself)
    invited = invite(env, "mia@m365.test")
    authorize, cookie, _ = start_with_cookie(invited.token)
    params = Person(sim).sign_in(authorize, "mia@m365.test")
    ddb = boto3.client("dynamodb")
    key = {"pk": {"S": f"OAUTH#{digest(params['state'])}"}, "sk": {"S": "FLOW"}}
    ddb.update_item(
        TableName=env.repo.table_name,
        Key=key,
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )
    sim.reset_observations()
    # When the browser comes back
    answer, _ = finish(params, cookie)
    # Then the sign-in is expired: no code exchange, nothing started, a way to start again
    assert reason_of(answer) == "m365_sign_in_expired"
    assert not [r for r in sim.requests_seen if r.path.endswith("/token")]
    assert env.executions() == []
    assert f"/connect/{invited.token}/microsoft" in answer.body
