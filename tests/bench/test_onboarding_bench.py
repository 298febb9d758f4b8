"""Smoke test of the onboarding bench: three onboardings (autodiscover, manual settings, a wrong password)
end to end against a local stack, and its correctness check passes. Times are printed, never asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import template_environment

ROOT = Path(__file__).resolve().parents[2]


def test_three_onboardings_pass_the_bench_check() -> None:
    # Its own process: the local stack sets AWS_* variables and patches moto and botocore in-process.
    # One owner at a time: the local stack runs the API functions in one process, where concurrent
    # requests to two functions can see each other's event (Powertools keeps it on a class attribute).
    test_only = set(template_environment())  # the tests' values (tests/conftest.py), not the stack's
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "POWERTOOLS_")) and k not in test_only
    }
    env["PYTHONPATH"] = f"{ROOT / 'layers' / 'common'}{os.pathsep}{ROOT}"
    done = subprocess.run(
        [sys.executable, "-m", "bench.onboarding", "--quick", "--n", "3", "--concurrency", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CHECK PASSED" in done.stdout, done.stdout
