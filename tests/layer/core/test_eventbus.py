"""The EventBridge publisher: requests within PutEvents' quotas, in order; refused entries named, and nothing
sent after a request with a refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from onboarding.core.eventbus import MAX_REQUEST_BYTES, BusEvent, EventBridgePublisher, FailedEntry


class Recorder:
    """A PutEvents client that takes everything but the entries whose detail has `refuse`."""

    def __init__(self) -> None:
        self.requests: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.requests.append(Entries)
        results = [
            {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
            if json.loads(e["Detail"]).get("refuse")
            else {"EventId": f"id-{len(self.requests)}-{i}"}
            for i, e in enumerate(Entries)
        ]
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


def events(count: int, *, refuse: int | None = None, size: int = 10) -> list[BusEvent]:
    return [
        BusEvent("test", "Thing Happened", {"n": n, "refuse": n == refuse, "pad": "x" * size})
        for n in range(count)
    ]


def test_every_entry_names_the_bus_and_its_parts() -> None:
    client = Recorder()
    assert EventBridgePublisher("bus-1", client).put(events(1)) == []
    ((entry,),) = client.requests
    assert entry["EventBusName"] == "bus-1"
    assert (entry["Source"], entry["DetailType"]) == ("test", "Thing Happened")
    assert json.loads(entry["Detail"])["n"] == 0


def test_requests_hold_at_most_ten_entries_in_order() -> None:
    client = Recorder()
    assert EventBridgePublisher("bus", client).put(events(23)) == []
    assert [len(r) for r in client.requests] == [10, 10, 3]
    sent = [json.loads(e["Detail"])["n"] for r in client.requests for e in r]
    assert sent == list(range(23))


def test_requests_stay_under_the_size_quota() -> None:
    client = Recorder()
    EventBridgePublisher("bus", client).put(events(5, size=100_000))
    assert [len(r) for r in client.requests] == [2, 2, 1]
    for request in client.requests:
        assert (
            sum(len(e["Detail"]) + len("test") + len("Thing Happened") for e in request) <= MAX_REQUEST_BYTES
        )


@pytest.mark.parametrize(("refused", "requests"), [(3, 1), (12, 2)])
def test_a_refused_entry_is_named_and_no_later_request_is_sent(refused: int, requests: int) -> None:
    client = Recorder()
    failed = EventBridgePublisher("bus", client).put(events(25, refuse=refused))
    # The refused entry with its error; the entries of the requests not sent: NotSent
    assert failed[0] == FailedEntry(refused, "InternalFailure", "try again")
    assert [f.index for f in failed[1:]] == list(range(requests * 10, 25))
    assert {f.error_code for f in failed[1:]} == {"NotSent"}
    assert len(client.requests) == requests
