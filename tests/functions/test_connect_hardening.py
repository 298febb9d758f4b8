"""The connect page refuses what no person's browser sends: bodies too big, too many fields, not UTF-8 or
not base64 -- each a 400 page, never a 500; server names that are not DNS names are a 422 page with the
form again, saying what to fix. An expired link shows
no status page, even once used."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import boto3
import pytest
from werkzeug.wrappers import Request

from onboarding.invites.tokens import token_hash
from tests.conftest import TABLE_NAME, stored_secrets
from tests.connect_helpers import (
    BASE_URL,
    PASSWORD,
    ConnectEnv,
    Invited,
    call,
    credentials,
    event_for,
    get,
    nonce_of,
    post,
)


def _raw_post(token: str, body: str, *, base64_encoded: bool) -> int:
    event = event_for("POST", f"/connect/{token}", raw_body=body)
    event["isBase64Encoded"] = base64_encoded
    event["headers"] = {
        **event.get("headers", {}),
        "content-type": "application/x-www-form-urlencoded",
        "origin": BASE_URL,
    }
    answer = call(event)
    assert "could not read this form" in answer.body or answer.status != 400
    return answer.status


@pytest.mark.parametrize(
    ("body", "encoded"),
    [
        pytest.param(base64.b64encode(b"\xff\xfe\x00binary").decode(), True, id="not-utf8"),
        pytest.param("%%%not base64%%%", True, id="not-base64"),
        pytest.param("a=" + "x" * 9000, False, id="too-large"),
        pytest.param(base64.b64encode(b"a=" + b"x" * 9000).decode(), True, id="too-large-base64"),
        pytest.param("&".join(f"f{i}=1" for i in range(40)), False, id="too-many-fields"),
    ],
)
def test_an_unreadable_form_is_a_400_page(
    env: ConnectEnv, invited: Invited, body: str, encoded: bool
) -> None:
    assert _raw_post(invited.token, body, base64_encoded=encoded) == 400
    assert env.item(invited.agent_id)["status"] == "invited"  # nothing changed


def test_a_form_with_raw_bytes_that_are_not_utf8_is_a_400_that_keeps_nothing(
    env: ConnectEnv, invited: Invited
) -> None:
    """A urlencoded body is ASCII (browsers percent-encode); raw non-UTF-8 bytes in it reach the function as
    the gateway decodes a text body: with U+FFFD in their place. The password would arrive mangled."""
    from devstack.gateway import build_event
    from devstack.template import http_routes

    nonce = nonce_of(get(f"/connect/{invited.token}").body)
    body = urlencode(credentials(nonce, password="x")).encode().replace(b"password=x", b"password=Pa\xe9ss")
    request = Request.from_values(
        path=f"/connect/{invited.token}",
        method="POST",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": BASE_URL},
        base_url=BASE_URL,
    )
    (route,) = [r for r in http_routes() if (r.method, r.path) == ("POST", "/connect/{token}")]
    event = build_event(request, route, {"token": invited.token}, None)
    answer = call(event)
    assert answer.status == 400
    assert "could not read this form" in answer.body
    assert env.item(invited.agent_id)["status"] == "invited"  # nothing changed
    assert stored_secrets() == []


@pytest.mark.parametrize(
    ("server", "what_to_fix"),
    [
        ("mail..contoso.com", "the name has an empty part between dots"),
        (".contoso.com", "the name has an empty part between dots"),
        ("mail.contoso.com.", "the name has an empty part between dots"),
        ("a" * 64 + ".contoso.com", "each part between dots has at most 63 characters; one has 64"),
        ("x." * 130 + "com", "a server name has at most 253 characters; this one has 263"),
        ("-mail.contoso.com", "a part between dots cannot start or end with a hyphen"),
        ("mail-.contoso.com", "a part between dots cannot start or end with a hyphen"),
        ("mail_1.contoso.com", "use only letters, digits, hyphens and dots"),
    ],
)
def test_a_server_that_is_not_a_dns_name_is_a_422_page_saying_what_to_fix(
    env: ConnectEnv, invited: Invited, server: str, what_to_fix: str
) -> None:
    nonce = nonce_of(get(f"/connect/{invited.token}").body)
    typed = credentials(nonce, server=server, username="CONTOSO\\ann")
    answer = post(f"/connect/{invited.token}", typed)
    # Then a 422 with the sign-in form again, the problem named beside the Server field
    assert answer.status == 422
    assert f"Server: {what_to_fix}" in answer.body
    assert nonce_of(answer.body)
    # And what the owner typed is kept (the password is never sent back); nothing was stored or started
    assert f'name="server" value="{server}"' in answer.body
    assert 'name="username" value="CONTOSO\\ann"' in answer.body
    assert "<details open>" in answer.body
    assert PASSWORD not in answer.body
    assert env.item(invited.agent_id)["status"] == "invited"
    assert env.executions() == []


def test_a_253_character_server_name_is_taken(env: ConnectEnv, invited: Invited) -> None:
    server = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61  # 253 in all
    nonce = nonce_of(get(f"/connect/{invited.token}").body)
    assert post(f"/connect/{invited.token}", credentials(nonce, server=server)).status == 303
    assert env.item(invited.agent_id)["connServer"] == server


def test_settings_with_a_server_that_is_not_a_dns_name_are_a_422_keeping_the_settings(
    env: ConnectEnv, invited: Invited
) -> None:
    from onboarding.agents.models import AgentStatus
    from tests import lifecycle

    lifecycle.walk(env.repo, env.repo.get("demo", invited.agent_id), AgentStatus.NEEDS_SETTINGS)
    nonce = nonce_of(get(f"/connect/{invited.token}/status").body)
    form = {"nonce": nonce, "server": "mail..contoso.com", "username": "ann@contoso.com"}
    answer = post(f"/connect/{invited.token}/settings", form)
    assert answer.status == 422
    assert "Server: the name has an empty part between dots" in answer.body
    assert f'action="{BASE_URL}/connect/{invited.token}/settings"' in answer.body
    assert 'name="server" value="mail..contoso.com"' in answer.body
    assert 'name="username" value="ann@contoso.com"' in answer.body
    assert env.item(invited.agent_id)["status"] == "needs_settings"


def test_what_was_typed_comes_back_escaped(env: ConnectEnv, invited: Invited) -> None:
    nonce = nonce_of(get(f"/connect/{invited.token}").body)
    answer = post(f"/connect/{invited.token}", credentials(nonce, server='"><script>x</script>'))
    assert answer.status == 422
    assert "<script>x" not in answer.body
    assert "&lt;script&gt;" in answer.body


def test_a_form_within_the_limits_still_works(env: ConnectEnv, invited: Invited) -> None:
    nonce = nonce_of(get(f"/connect/{invited.token}").body)
    body = urlencode(credentials(nonce, server="a" * 63 + ".contoso.com"))
    assert _raw_post(invited.token, base64.b64encode(body.encode()).decode(), base64_encoded=True) == 303


def test_a_used_link_past_its_expiry_shows_no_status(env: ConnectEnv, invited: Invited) -> None:
    table = boto3.client("dynamodb")
    key = {"pk": {"S": f"INVITE#{token_hash(invited.token)}"}, "sk": {"S": "INVITE"}}
    now = datetime.now(UTC)
    table.update_item(
        TableName=TABLE_NAME,
        Key=key,
        UpdateExpression="SET usedAt = :now",
        ExpressionAttributeValues={
            ":now": {"S": now.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
        },
    )
    assert get(f"/connect/{invited.token}/status").status == 200  # used, not expired: the status page
    past = (now - timedelta(minutes=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    table.update_item(
        TableName=TABLE_NAME,
        Key=key,
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"S": past}},
    )
    answer = get(f"/connect/{invited.token}/status")
    assert answer.status == 410
    assert "expired" in answer.body
