"""No API response ever carries a password or its ciphertext: after a real submission through the connect
page, every route of the dashboard API and of the connect page is read and searched for the password,
the sealed bytes and the wrapped data key (raw, base64 and hex)."""

from __future__ import annotations

import base64
import json
from typing import Any

from functions.add_agent import app as api
from tests.conftest import LambdaContext, api_event, stored_secrets
from tests.connect_helpers import (
    PASSWORD,
    ConnectEnv,
    Invited,
    credentials,
    get,
    nonce_of,
    post,
)


def _api(method: str, path: str, **kwargs: Any) -> str:
    response = api.lambda_handler(api_event(method, path, **kwargs), LambdaContext())  # type: ignore[arg-type]
    return json.dumps(response)  # status, headers and body together


def _forms_of(secret: bytes) -> list[str]:
    return [
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        secret.hex(),
        secret.decode("latin-1"),
    ]


def test_no_response_carries_the_password_or_its_ciphertext(env: ConnectEnv) -> None:
    # Given an owner who submitted the password through the connect page
    invited: Invited = env.invite()
    nonce = nonce_of(get(f"/connect/{invited.token}").body)
    assert post(f"/connect/{invited.token}", credentials(nonce)).status == 303
    (item,) = stored_secrets(invited.agent_id)
    needles = [PASSWORD, *_forms_of(item["sealed"]["B"]), *_forms_of(item["dataKey"]["B"])]
    # When every route that shows the agent is read
    answers = [
        _api("GET", "/agents"),
        _api("GET", "/agents", query={"status": "connecting"}),
        _api(
            "GET",
            f"/agents/{invited.agent_id}",
            route="/agents/{agentId}",
            path_params={"agentId": invited.agent_id},
        ),
        get(f"/connect/{invited.token}/status").body,
        get(f"/connect/{invited.token}/status", accept="application/json").body,
        json.dumps(get(f"/connect/{invited.token}/status", accept="application/json").headers),
        get(f"/connect/{invited.token}").body,
    ]
    # Then none of them holds the password or any form of the sealed bytes or the wrapped key
    assert all(answers[:-1])  # the link itself answers a redirect to the status page (empty body)
    for answer in answers:
        for needle in needles:
            assert needle not in answer
        for name in ("sealed", "dataKey", "password"):
            assert f'"{name}"' not in answer
    # And removing the agent (while its verification runs) stops the workflow and deletes the secret
    removed = _api(
        "DELETE",
        f"/agents/{invited.agent_id}",
        route="/agents/{agentId}",
        path_params={"agentId": invited.agent_id},
    )
    assert '"statusCode": 204' in removed
    assert stored_secrets(invited.agent_id) == []
    assert env.executions()[0]["status"] == "ABORTED"
    # And the API's answers are never cached
    response = api.lambda_handler(api_event("GET", "/agents"), LambdaContext())  # type: ignore[arg-type]
    assert response["headers"]["Cache-Control"] == "no-store"
    assert response["headers"]["X-Content-Type-Options"] == "nosniff"
