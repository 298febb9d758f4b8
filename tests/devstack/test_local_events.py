"""The local stack publishes status events: add an agent over HTTP, and its `Agent Status Changed` events
(from PublishStatusFunction, run on the stream as the template says) show on /_local/events."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import jsonschema
import requests

from tests.conftest import RunningStack

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "events" / "agent-status-changed.schema.json").read_text()
)


def _events_of(base: str, agent_id: str, count: int) -> list[dict[str, Any]]:
    """The agent's events, newest first, once there are `count` (or after 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        found = requests.get(f"{base}/_local/events", params={"agent": agent_id}, timeout=10).json()
        if len(found) >= count or time.monotonic() > deadline:
            return list(found)
        time.sleep(0.2)


def test_adding_an_agent_publishes_its_status_changes_on_the_bus(local_stack: RunningStack) -> None:
    base = local_stack.base_url
    headers = {"Authorization": f"Bearer {local_stack.token('demo')}"}
    # Given an agent added over the API (its invite goes out: invite_pending -> invited)
    body = {"name": "Eventful Erin", "email": "events.erin@contoso.test", "type": "ms_exchange"}
    agent = requests.post(f"{base}/agents", json=body, headers=headers, timeout=10).json()
    # Then the bus got both changes: the JSON list is newest first
    newest, oldest = _events_of(base, agent["agentId"], 2)
    changes = [(e["detail"]["from"], e["detail"]["to"], e["detail"]["version"]) for e in (oldest, newest)]
    assert changes == [(None, "invite_pending", 1), ("invite_pending", "invited", 2)]
    for event in (oldest, newest):
        assert (event["source"], event["detail-type"]) == ("mailbox-onboarding", "Agent Status Changed")
        assert event["detail"]["tenantId"] == "demo"
        # moto leaves `account` out of what its rule targets get (EventBridge sends it)
        jsonschema.validate({"account": "123456789012", **event}, SCHEMA)
        # ... and no event holds the address, the name or the invite's link
        text = json.dumps(event)
        assert "erin" not in text.lower()
        assert "/connect/" not in text

    # When the agent is removed, Then that is an event too
    requests.delete(f"{base}/agents/{agent['agentId']}", headers=headers, timeout=10)
    removed = _events_of(base, agent["agentId"], 3)[0]["detail"]
    assert (removed["from"], removed["to"], removed["version"]) == ("invited", "removed", 3)

    # And a browser gets the page, newest first, one row per event
    page = requests.get(f"{base}/_local/events", headers={"Accept": "text/html"}, timeout=10)
    assert page.headers["Content-Type"].startswith("text/html")
    rows = [
        row for row in page.text.split('<tr class="event"')[1:] if f'data-agent="{agent["agentId"]}"' in row
    ]
    assert [re.search(r"<strong>(\w+)</strong>", row).group(1) for row in rows] == [  # type: ignore[union-attr]
        "removed",
        "invited",
        "invite_pending",
    ]
    # ... whose JSON link gives the list
    assert requests.get(
        f"{base}/_local/events?format=json", headers={"Accept": "text/html"}, timeout=10
    ).json()


def test_the_deliveries_to_functions_keep_their_own_list(local_stack: RunningStack) -> None:
    """`/_local/events.json` stays what it was: EventBridge events delivered to the stack's functions."""
    delivered = requests.get(f"{local_stack.base_url}/_local/events.json", timeout=10).json()
    assert all(set(d) == {"function", "event"} for d in delivered)
    assert not any(d["event"].get("source") == "mailbox-onboarding" for d in delivered)
