"""Cached AWS clients. Nothing is created at import time, so any module imports without AWS settings.

Region and endpoint come from the standard variables (AWS_REGION, AWS_ENDPOINT_URL): on Lambda the
runtime sets the region; the local stack points AWS_ENDPOINT_URL at moto.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 3},
)


@functools.cache
def client(service: str) -> Any:
    """One client per service per process (clients are thread-safe and reuse connections)."""
    return boto3.session.Session().client(service, config=_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (tests switch between moto contexts)."""
    client.cache_clear()
