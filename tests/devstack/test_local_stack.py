"""The local stack as a dashboard developer uses it: HTTP against the gateway, tokens from the CLI."""

from __future__ import annotations

import subprocess
import sys

import jwt
import pytest
import requests

from tests.conftest import ROOT, RunningStack

NEW = {"name": "Ann Lee", "email": "ann@contoso.com", "type": "ms_exchange"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_curl_session_of_the_readme_works(local_stack: RunningStack) -> None:
    base, demo = local_stack.base_url, auth(local_stack.token("demo"))
    created = requests.post(f"{base}/agents", json=NEW, headers=demo, timeout=10)
    assert created.status_code == 201, created.text
    agent = created.json()
    listed = requests.get(f"{base}/agents", headers=demo, timeout=10).json()
    assert agent["agentId"] in [a["agentId"] for a in listed["items"]]
    read = requests.get(f"{base}/agents/{agent['agentId']}", headers=demo, timeout=10).json()
    if read["version"] != agent["version"]:  # the stream sent the invite meanwhile: exactly that changed
        assert (read["status"], read["version"]) == ("invited", agent["version"] + 1)
        assert read["updatedAt"] > agent["updatedAt"]
        read = {
            **read,
            "status": agent["status"],
            "version": agent["version"],
            "updatedAt": agent["updatedAt"],
        }
    assert read == agent
    duplicate = requests.post(
        f"{base}/agents", json={**NEW, "email": "ANN@Contoso.com"}, headers=demo, timeout=10
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "duplicate_agent"
    bad = requests.post(
        f"{base}/agents", json={"name": "", "email": "x", "type": "imap"}, headers=demo, timeout=10
    )
    assert bad.status_code == 422
    assert {d["field"] for d in bad.json()["error"]["details"]} == {"name", "email", "type"}
    for _ in range(2):
        gone = requests.delete(f"{base}/agents/{agent['agentId']}", headers=demo, timeout=10)
        assert (gone.status_code, gone.content) == (204, b"")
    assert requests.get(f"{base}/agents/{agent['agentId']}", headers=demo, timeout=10).status_code == 404


def test_one_tenant_never_sees_anothers_agents(local_stack: RunningStack) -> None:
    base = local_stack.base_url
    demo, acme = auth(local_stack.token("demo")), auth(local_stack.token("acme"))
    mine = requests.post(
        f"{base}/agents", json={**NEW, "email": "iso@contoso.com"}, headers=demo, timeout=10
    ).json()
    theirs = requests.get(f"{base}/agents", headers=acme, timeout=10).json()["items"]
    assert mine["agentId"] not in [a["agentId"] for a in theirs]
    assert requests.get(f"{base}/agents/{mine['agentId']}", headers=acme, timeout=10).status_code == 404
    assert requests.delete(f"{base}/agents/{mine['agentId']}", headers=acme, timeout=10).status_code == 204
    assert requests.get(f"{base}/agents/{mine['agentId']}", headers=demo, timeout=10).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Bearer not-a-jwt",
        "Bearer "
        + jwt.encode({"custom:tenant_id": "demo"}, "guessed-secret-of-32-bytes-or-more!", algorithm="HS256"),
    ],
)
def test_without_a_token_it_minted_the_gateway_answers_401(
    local_stack: RunningStack, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = requests.get(f"{local_stack.base_url}/agents", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_the_token_command_prints_a_token_the_gateway_accepts(local_stack: RunningStack) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "devstack", "token", "--tenant", "acme"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": f"{ROOT / 'layers' / 'common'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    response = requests.get(f"{local_stack.base_url}/agents", headers=auth(printed), timeout=10)
    assert response.status_code == 200


def test_the_openapi_document_is_public(local_stack: RunningStack) -> None:
    response = requests.get(f"{local_stack.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert "/agents" in response.json()["paths"]


def test_unknown_routes_are_404(local_stack: RunningStack) -> None:
    assert requests.get(f"{local_stack.base_url}/nope", timeout=10).status_code == 404
    assert requests.put(f"{local_stack.base_url}/agents", timeout=10).status_code == 404
