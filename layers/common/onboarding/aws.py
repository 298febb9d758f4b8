"""Cached AWS clients. Nothing is created at import time, so any module imports without AWS settings.

Region and endpoint come from the standard variables (AWS_DEFAULT_REGION, AWS_ENDPOINT_URL): on Lambda the
runtime sets the region; the local stack points AWS_ENDPOINT_URL at moto.

Clients come from botocore directly, not boto3: importing boto3 also imports s3transfer and most of its
machinery (about two thirds of a bare `import boto3`, measured by bench/cold_start.py), and we use
nothing of it beyond `boto3.client`, which is this same call.
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
from botocore.config import Config

_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 3},
)


@functools.cache
def client(service: str) -> Any:
    """One client per service per process (clients are thread-safe and reuse connections)."""
    return botocore.session.get_session().create_client(service, config=_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (tests switch between moto contexts)."""
    client.cache_clear()
