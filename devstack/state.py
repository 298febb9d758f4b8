"""What the local stack keeps across restarts, in `.devstack/state.json` (git-ignored, owner-only).

moto keeps everything in memory and has no way to save it (its recorder replays requests, which would
re-run workflows and re-send mail), so the local stack saves its own state: every item of the DynamoDB
tables (agents and invites, so old invite links keep working), the emails sent (the sent-mail page
shows earlier runs), the local secrets of the template (the CSRF key, so a form left open across a
restart still posts) and the material of its KMS keys (the credentials table's items are sealed with
data keys of the credentials key: restored under a new key they could never be unsealed). Saved every
few seconds and on Ctrl-C, to a file only its owner can read: it holds the sealed secrets and the key
that unseals them, as a local stack with simulated mailboxes may.

Running workflows are not kept (moto cannot save them): the stack starts each attempt that was being
checked, or waited for advanced settings, again; it reads the restored sealed secret as before.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
VERSION = 1


class StateInUseError(Exception):
    """Another local stack runs with the same state directory."""


@dataclass
class Snapshot:
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # logical id -> items (typed JSON)
    emails: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # logical id -> value
    # KMS keys: logical id -> {"id": key id, "material": base64 of the key material}
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    runs: int = 0  # how many runs saved into this state

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "runs": self.runs,
            "tables": self.tables,
            "emails": self.emails,
            "secrets": self.secrets,
            "keys": self.keys,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        if data.get("version") != VERSION:
            return cls()
        return cls(
            tables=dict(data.get("tables") or {}),
            emails=list(data.get("emails") or []),
            secrets=dict(data.get("secrets") or {}),
            keys=dict(data.get("keys") or {}),
            runs=int(data.get("runs") or 0),
        )


class StateDir:
    """The state directory of one running stack: locked while it runs, saved atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[str] | None = None

    @property
    def file(self) -> Path:
        return self.path / STATE_FILE

    def acquire(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        lock = (self.path / LOCK_FILE).open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StateInUseError(str(self.path)) from None
        self._lock = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing drops the flock
            self._lock = None

    def load(self) -> Snapshot:
        try:
            return Snapshot.from_json(json.loads(self.file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return Snapshot()
        except (ValueError, TypeError, AttributeError) as error:
            broken = self.file.with_suffix(".broken.json")
            self.file.replace(broken)
            print(f"[state] {self.file} could not be read ({error}); moved to {broken}, starting empty")
            return Snapshot()

    def save(self, snapshot: Snapshot) -> None:
        temporary = self.file.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(snapshot.to_json(), stream)
        temporary.replace(self.file)


def scan_items(ddb: Any, table_name: str) -> list[dict[str, Any]]:
    """Every item of a table, in DynamoDB's typed JSON (what PutItem takes back), binary values as base64
    text (the credentials table's sealed items are binary)."""
    items: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=table_name, ConsistentRead=True):
        items += [_binaries(item, _to_text) for item in page.get("Items", [])]
    return items


def put_items(ddb: Any, table_name: str, items: list[dict[str, Any]]) -> None:
    for item in items:
        ddb.put_item(TableName=table_name, Item=_binaries(item, base64.b64decode))


def _to_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _binaries(item: dict[str, Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    return {name: _binary(value, convert) for name, value in item.items()}


def _binary(value: dict[str, Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    """A typed attribute value with its binary parts converted (bytes <-> base64 text), nested ones too."""
    ((kind, inner),) = value.items()
    if kind == "B":
        return {kind: convert(inner)}
    if kind == "BS":
        return {kind: [convert(one) for one in inner]}
    if kind == "M":
        return {kind: _binaries(inner, convert)}
    if kind == "L":
        return {kind: [_binary(one, convert) for one in inner]}
    return value


@dataclass
class Saver:
    """Takes a snapshot every `interval` seconds in the background, and once more on stop."""

    state: StateDir
    take: Callable[[], Snapshot]
    interval: float = 5.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Saver:
        self._thread = threading.Thread(target=self._run, name="state-saver", daemon=True)
        self._thread.start()
        return self

    def save_now(self) -> None:
        self.state.save(self.take())

    def save_reported(self) -> None:
        """Save; a failure is printed (the next save tries again), never raised."""
        with _reported("saving the local stack's state"):
            self.save_now()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.save_reported()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@contextlib.contextmanager
def _reported(what: str) -> Iterator[None]:
    try:
        yield
    except Exception as error:  # the next round tries again; the console says why this one failed
        print(f"[state] {what} failed: {type(error).__name__}: {error}", flush=True)
