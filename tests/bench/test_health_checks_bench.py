"""The health-checks bench: its DynamoDB capacity rules (the cost table rests on them), and a small run end to
end. Figures are printed by the bench, never asserted here; what is asserted is what the figures mean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.health_checks import SHIPPED, item_size, layouts, write_units
from tests.conftest import template_environment

ROOT = Path(__file__).resolve().parents[2]


def _agent(size: int, due: str = "2026-03-03T10:00:00.000Z", **extra: str) -> dict[str, Any]:
    """A connected agent's item of about `size` bytes, in both indexes."""
    item: dict[str, Any] = {
        "pk": {"S": "TENANT#demo"},
        "sk": {"S": "AGENT#01JF0000000000000000000000"},
        "gsi1pk": {"S": "TENANT#demo#STATUS#verified"},
        "gsi1sk": {"S": "AGENT#01JF0000000000000000000000"},
        "status": {"S": "verified"},
        "checkShard": {"S": "CHECK#03"},
        "checkDueAt": {"S": due},
        **{name: {"S": value} for name, value in extra.items()},
    }
    item["exchangeTrace"] = {"S": "x" * max(0, size - item_size(item) - len("exchangeTrace"))}
    return item


def test_item_size_counts_names_and_values_as_dynamodb_does() -> None:
    assert item_size({"ab": {"S": "xyz"}}) == 5
    assert item_size({"n": {"N": "12345"}}) == 1 + 4  # 5 digits: 3 bytes + 1
    assert item_size({"b": {"BOOL": True}, "l": {"L": [{"S": "ab"}]}}) == (1 + 1) + (1 + 3 + 1 + 2)


def test_a_lease_of_a_large_agent_writes_the_table_the_full_status_index_and_moves_its_due_entry() -> None:
    # Given an agent item of 4,800 bytes (the onboarding bench's average, with the Exchange trace)
    before = _agent(4800)
    # When the lease moves its checkDueAt
    after = {**before, "checkDueAt": {"S": "2026-03-03T10:15:00.000Z"}, "checkLease": {"S": "L1"}}
    units = write_units(before, after)
    # Then: 5 WRU for the table, 5 for ByStatus (projects ALL), 2 for ByCheckDue (old entry out, new in)
    assert units == {"table": 5.0, "ByStatus": 5.0, "ByCheckDue": 2.0}


def test_a_write_of_private_attributes_only_rewrites_a_status_index_projecting_all_but_not_one_of_public_fields() -> (
    None
):
    before = _agent(800)
    after = {**before, "exchangeTrace": {"S": "y" * len(before["exchangeTrace"]["S"])}}
    assert write_units(before, after, SHIPPED) == {"table": 1.0, "ByStatus": 1.0, "ByCheckDue": 0.0}
    assert write_units(before, after, layouts()[1])["ByStatus"] == 0.0


def test_a_write_that_takes_the_agent_out_of_the_schedule_deletes_its_due_entry() -> None:
    before = _agent(800)
    after = {k: v for k, v in before.items() if k not in {"checkShard", "checkDueAt"}}
    assert write_units(before, after)["ByCheckDue"] == 1.0


def test_the_trace_kept_elsewhere_is_not_billed_on_the_agents_writes() -> None:
    before = _agent(4800)
    after = {**before, "checkDueAt": {"S": "2026-03-03T16:00:00.000Z"}}
    assert write_units(before, after, layouts()[2])["table"] == 1.0


def test_a_small_run_of_the_bench_finds_every_due_agent_with_queries_and_checks_in_few_requests() -> None:
    # Its own process: the bench sets AWS_* variables and patches moto and botocore in-process.
    test_only = set(template_environment())
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "POWERTOOLS_")) and k not in test_only
    }
    env["PYTHONPATH"] = f"{ROOT / 'layers' / 'common'}{os.pathsep}{ROOT}"
    done = subprocess.run(
        [sys.executable, "-m", "bench.health_checks", "--agents", "60", "--checks", "10", "--hours", "0.5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "measured dispatches found the same" in out, out
    assert "Exchange NTLM   (alice@contoso.test): 3 HTTP requests" in out, out
    assert "Exchange basic  (bea@fabrikam.test): 2 HTTP requests" in out, out
    assert "Microsoft 365 steady: 2 HTTP requests" in out, out
    assert "verdicts {'healthy': 10}" in out, out
