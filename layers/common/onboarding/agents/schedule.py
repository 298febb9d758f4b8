"""When a connected agent is checked next (onboarding.health), kept on its item for the `ByCheckDue` index.

The index is sparse: an agent is in it only while it carries `checkShard` and `checkDueAt`. Agents are spread
over `CHECK_SHARDS` partitions (`CHECK#00` ...) so the dispatcher's queries stay small and no partition is
hot, and over the check interval by a hash of their id: 10,000 agents verified in the same minute are not all
checked in the same minute afterwards.

Here (floor 2), so that verification (floor 4) and the health checks share one rule.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from onboarding.agents.models import Attr
from onboarding.core.times import iso, parse_iso  # noqa: F401 (the health checks import them from here)

CHECK_SHARDS = 16
DEFAULT_INTERVAL = timedelta(hours=6)

# What a reconnect (or a first verification) clears: the problem a check recorded is over.
PROBLEM_ATTRIBUTES = (
    Attr.FAILING_SINCE,
    Attr.CHECK_PROBLEM,
    Attr.LOCKED_UNTIL,
    Attr.CHECK_LEASE,
    Attr.PROBLEM_SINCE,
)


def _fraction(agent_id: str) -> float:
    """A stable number in [0, 1) for the agent (SHA-256 of its id): its phase in the interval."""
    return int.from_bytes(hashlib.sha256(agent_id.encode()).digest()[:8], "big") / 2**64


def shard_of(agent_id: str) -> str:
    digest = hashlib.sha256(b"shard:" + agent_id.encode()).digest()
    return f"CHECK#{digest[0] % CHECK_SHARDS:02d}"


def first_due(agent_id: str, now: datetime, interval: timedelta = DEFAULT_INTERVAL) -> datetime:
    """The first check after `now`: at the agent's own phase of the interval (evenly spread over agents)."""
    return now + interval * max(_fraction(agent_id), 0.001)


def next_due(previous_due: datetime | None, now: datetime, interval: timedelta) -> datetime:
    """The next scheduled check after a check: one interval after the last due time, keeping the agent's
    phase (so the spread stays even), but never in the past and never less than half an interval away."""
    if previous_due is None:
        return now + interval
    due = previous_due + interval
    if due <= now:  # late (a backlog, a manual check, a long outage): one interval from now
        due = now + interval
    return due


def scheduled_attributes(
    agent_id: str, now: datetime, interval: timedelta = DEFAULT_INTERVAL
) -> dict[str, Any]:
    """What a verification writes with `verified`: in the index, first check at the agent's phase, no
    problem, and a fresh count of reconnect emails (a reconnect keeps the agent's id, history and settings)."""
    return {
        Attr.CHECK_SHARD: shard_of(agent_id),
        Attr.CHECK_DUE_AT: iso(first_due(agent_id, now, interval)),
        Attr.CHECK_STATE: "ok",
        Attr.CHECK_FAILURES: 0,
        Attr.RECONNECT_EMAILS: 0,
    }
