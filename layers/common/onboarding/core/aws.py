"""Cached AWS clients. Nothing is created at import time, so any module imports without AWS settings.

Region and endpoint come from the standard variables (AWS_DEFAULT_REGION, AWS_ENDPOINT_URL): on Lambda the
runtime sets the region; the local stack points AWS_ENDPOINT_URL at moto.

Clients come from botocore directly, not boto3: importing boto3 also imports s3transfer and most of its
machinery (about two thirds of a bare `import boto3`, measured by bench/cold_start.py), and we use
nothing of it beyond `boto3.client`, which is this same call.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import botocore.session
from botocore.config import Config

_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 3},
)


_CREATING = threading.Lock()  # a botocore session is not thread-safe (the local stack serves on threads)


@functools.cache
def _session() -> botocore.session.Session:
    """One session per process: its loaders cache what every client reads (endpoint rules, partitions,
    default config), and its handlers are registered once rather than once per client."""
    return botocore.session.get_session()


@functools.cache
def client(service: str) -> Any:
    """One client per service per process (clients are thread-safe and reuse connections)."""
    with _CREATING:
        return _session().create_client(service, config=_CONFIG)


class LazyClient:
    """The service's client, created at its first use: for a client only some requests need (Step Functions in
    the dashboard API, for removals and dead starts), the others do not pay for loading its service model."""

    def __init__(self, service: str) -> None:
        self.service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(client(self.service), name)

    def __repr__(self) -> str:
        return f"LazyClient({self.service!r})"


def reset_clients() -> None:
    """Forget cached clients and the session (tests switch between moto contexts)."""
    client.cache_clear()
    _session.cache_clear()
