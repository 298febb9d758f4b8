"""Times as the service stores and shows them: ISO 8601 in UTC with milliseconds and a `Z`
(`2026-03-03T09:00:00.000Z`), which sort as text in DynamoDB keys and conditions."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
