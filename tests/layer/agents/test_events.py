"""`Agent Status Changed` from stream records: which records are changes, what an event says, and the JSON
Schema in docs/events/ agreeing with the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from onboarding.agents import events
from onboarding.agents.models import AgentStatus
from onboarding.core.dynamo_types import to_item

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "docs" / "events" / "agent-status-changed.schema.json").read_text())
AGENT = "01JBX7Z8Q4M2V6N9P3R5T7W9YA"


def image(status: str, version: int, **extra: Any) -> dict[str, Any]:
    return to_item(
        {
            "pk": "TENANT#acme",
            "sk": f"AGENT#{AGENT}",
            "entity": "agent",
            "tenantId": "acme",
            "agentId": AGENT,
            "email": "ann@contoso.com",
            "name": "Ann",
            "status": status,
            "updatedAt": f"2026-03-03T08:15:0{version}.000Z",
            "version": version,
            **extra,
        }
    )


def record(
    name: str, old: dict[str, Any] | None, new: dict[str, Any] | None, **change: Any
) -> events.StreamRecord:
    dynamodb: dict[str, Any] = {"SequenceNumber": "1", **change}
    if old is not None:
        dynamodb["OldImage"] = old
    if new is not None:
        dynamodb["NewImage"] = new
    return events.StreamRecord.model_validate({"eventID": "e", "eventName": name, "dynamodb": dynamodb})


def test_an_insert_is_a_change_from_nothing() -> None:
    change = events.status_change(record("INSERT", None, image("invite_pending", 1)))
    assert change is not None
    assert change.detail() == {
        "tenantId": "acme",
        "agentId": AGENT,
        "from": None,
        "to": "invite_pending",
        "reason": None,
        "time": "2026-03-03T08:15:01.000Z",
        "version": 1,
    }


def test_a_modify_is_a_change_when_the_status_differs() -> None:
    old, new = image("verified", 4), image("needs_reconnect", 5, statusReason="wrong_password")
    change = events.status_change(record("MODIFY", old, new))
    assert change is not None
    assert (change.from_status, change.to_status, change.reason, change.version) == (
        AgentStatus.VERIFIED,
        AgentStatus.NEEDS_RECONNECT,
        "wrong_password",
        5,
    )
    assert events.status_change(record("MODIFY", image("verified", 4), image("verified", 4))) is None


def test_a_remove_is_a_change_to_removed_at_the_records_time() -> None:
    change = events.status_change(
        record("REMOVE", image("verified", 4), None, ApproximateCreationDateTime=1772525702.5)
    )
    assert change is not None
    assert (change.from_status, change.to_status, change.version) == (
        AgentStatus.VERIFIED,
        AgentStatus.REMOVED,
        5,
    )
    assert change.time == "2026-03-03T08:15:02.500Z"


def test_an_event_is_valid_against_the_schema_and_holds_no_personal_data() -> None:
    change = events.status_change(
        record("MODIFY", image("connecting", 3), image("failed", 4, statusReason="x"))
    )
    assert change is not None
    bus_event = change.bus_event()
    envelope = {
        "version": "0",
        "id": "1",
        "detail-type": bus_event.detail_type,
        "source": bus_event.source,
        "account": "123456789012",
        "time": "2026-03-03T08:15:04Z",
        "region": "us-east-1",
        "resources": [],
        "detail": dict(bus_event.detail),
    }
    jsonschema.validate(envelope, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert "contoso" not in json.dumps(envelope)
    assert "Ann" not in json.dumps(envelope)


def test_a_record_without_the_image_it_needs_is_refused() -> None:
    with pytest.raises(ValueError, match="without its old image"):
        events.status_change(record("REMOVE", None, None))
    with pytest.raises(ValidationError):
        record("INSERT", None, to_item({"entity": "agent", "agentId": AGENT}))


def test_the_schema_is_draft_2020_12_and_its_own_examples_are_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] == events.SCHEMA_ID
    for example in SCHEMA["examples"]:
        jsonschema.validate(example, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_the_schema_and_the_model_agree() -> None:
    """Every status the code has is in the schema (a new status needs the schema updated: consumers read
    it), and the detail has exactly the model's fields."""
    assert SCHEMA["$defs"]["status"]["enum"] == [s.value for s in AgentStatus]
    detail = SCHEMA["$defs"]["detail"]
    fields = [f.alias or name for name, f in events.AgentStatusChanged.model_fields.items()]
    assert sorted(detail["required"]) == sorted(fields) == sorted(detail["properties"])
    assert SCHEMA["properties"]["source"] == {"const": events.SOURCE}
    assert SCHEMA["properties"]["detail-type"] == {"const": events.DETAIL_TYPE}


@pytest.mark.parametrize(
    "detail",
    [
        {"email": "ann@contoso.com"},  # no field beyond the model's
        {"to": "paused"},  # no status the code does not have
        {"time": "yesterday"},
        {"agentId": "not-an-id"},
    ],
)
def test_the_schema_refuses_what_the_event_must_not_be(detail: dict[str, Any]) -> None:
    (example,) = SCHEMA["examples"]
    bad = {**example, "detail": {**example["detail"], **detail}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
