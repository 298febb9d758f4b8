"""The local stack sends invites: add an agent over HTTP, the email shows up at /_local/emails."""

from __future__ import annotations

import re
import time
from typing import Any

import requests

from tests.conftest import RunningStack


def _emails_to(base: str, address: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        found = [e for e in requests.get(f"{base}/_local/emails", timeout=5).json() if e["to"] == address]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_adding_an_agent_emails_a_working_invite_link(local_stack: RunningStack) -> None:
    base = local_stack.base_url
    headers = {"Authorization": f"Bearer {local_stack.token('demo')}"}
    body = {"name": "Invitee", "email": "invitee@contoso.com", "type": "ms_exchange"}
    agent = requests.post(f"{base}/agents", json=body, headers=headers, timeout=10).json()

    (sent,) = _emails_to(base, "invitee@contoso.com", 1)
    assert re.fullmatch(rf"{re.escape(base)}/connect/[A-Za-z0-9_-]{{43}}", sent["link"])
    assert sent["link"] in sent["text"]
    assert sent["link"] in sent["html"]
    assert "Invitee" in sent["text"]
    # The email goes out first, then the agent moves to `invited`: give that write a moment.
    deadline = time.monotonic() + 5
    while True:
        shown = requests.get(f"{base}/agents/{agent['agentId']}", headers=headers, timeout=10).json()
        if shown["status"] != "invite_pending" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert shown["status"] == "invited"

    resent = requests.post(f"{base}/agents/{agent['agentId']}/invite", headers=headers, timeout=10)
    assert resent.status_code == 202
    first, second = _emails_to(base, "invitee@contoso.com", 2)
    assert first["link"] != second["link"]
    # The sent-mail folder lists the newest first, and `?to=` keeps one address (any letter case): the
    # newest is the resent invite, whose link works; the one before was revoked by the resend
    newest, older = requests.get(f"{base}/_local/emails.json?to=INVITEE@Contoso.com", timeout=10).json()
    assert {newest["link"], older["link"]} == {first["link"], second["link"]}
    assert requests.get(older["link"], timeout=10).status_code == 410
    assert requests.get(newest["link"], timeout=10).status_code == 200
    assert requests.get(f"{base}/_local/emails.json?to=nobody@contoso.com", timeout=10).json() == []
