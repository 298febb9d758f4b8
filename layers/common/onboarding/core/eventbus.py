"""Publishing to an EventBridge bus: one interface, one implementation over `PutEvents`.

`PutEvents` answers 200 even when some entries were not accepted: `FailedEntryCount` counts them and each
refused entry carries an `ErrorCode` (throttling, an internal failure) at its own index. An entry refused
that way is not on the bus, so `put` says which entries failed, in order, and the caller decides what a
failure means (the status publisher fails that stream record, and Lambda retries it).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# What one PutEvents request may carry (EventBridge quotas): 10 entries, 256 KB in all.
MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024


@dataclass(frozen=True)
class BusEvent:
    """One event for the bus: its source, detail-type, detail (a JSON object) and time."""

    source: str
    detail_type: str
    detail: Mapping[str, Any]
    time: datetime | None = None
    resources: tuple[str, ...] = ()

    def entry(self, bus_name: str) -> dict[str, Any]:
        """The `PutEventsRequestEntry`."""
        entry: dict[str, Any] = {
            "EventBusName": bus_name,
            "Source": self.source,
            "DetailType": self.detail_type,
            "Detail": json.dumps(self.detail, separators=(",", ":"), ensure_ascii=False),
        }
        if self.time is not None:
            entry["Time"] = self.time
        if self.resources:
            entry["Resources"] = list(self.resources)
        return entry


@dataclass(frozen=True)
class FailedEntry:
    index: int  # in the sequence given to `put`
    error_code: str
    error_message: str


class EventPublisher(ABC):
    @abstractmethod
    def put(self, events: Sequence[BusEvent]) -> list[FailedEntry]:
        """Publish `events` in order; the ones the bus did not accept (empty: all were). Once an entry
        fails, the later ones are not sent (they are reported failed too, with `NotSent`), so a retry from
        the first failure publishes nothing out of order. A failed request raises (botocore's error)."""


def _entry_size(entry: Mapping[str, Any]) -> int:
    """EventBridge's size of an entry: UTF-8 bytes of its Source, DetailType, Detail and Resources, and 14
    bytes for a Time."""
    size = sum(len(str(entry.get(k, "")).encode()) for k in ("Source", "DetailType", "Detail"))
    size += sum(len(r.encode()) for r in entry.get("Resources", []))
    return size + (14 if "Time" in entry else 0)


class EventBridgePublisher(EventPublisher):
    def __init__(self, bus_name: str, client: Any) -> None:
        self.bus_name = bus_name
        self.client = client

    def _requests(self, entries: list[dict[str, Any]]) -> list[tuple[int, list[dict[str, Any]]]]:
        """(index of the first entry, entries) per request, within the quotas, in order."""
        batches: list[tuple[int, list[dict[str, Any]]]] = []
        start, size = 0, 0
        for index, entry in enumerate(entries):
            entry_size = _entry_size(entry)
            current = entries[start:index]
            if current and (len(current) == MAX_ENTRIES or size + entry_size > MAX_REQUEST_BYTES):
                batches.append((start, current))
                start, size = index, 0
            size += entry_size
        if start < len(entries):
            batches.append((start, entries[start:]))
        return batches

    def put(self, events: Sequence[BusEvent]) -> list[FailedEntry]:
        entries = [event.entry(self.bus_name) for event in events]
        for first, batch in self._requests(entries):
            answer = self.client.put_events(Entries=batch)
            if not answer.get("FailedEntryCount"):
                continue
            failed = [
                FailedEntry(first + i, str(result["ErrorCode"]), str(result.get("ErrorMessage", "")))
                for i, result in enumerate(answer["Entries"])
                if result.get("ErrorCode")
            ]
            stopped = first + len(batch)
            not_sent = [
                FailedEntry(i, "NotSent", "an earlier entry failed") for i in range(stopped, len(entries))
            ]
            return failed + not_sent
        return []
