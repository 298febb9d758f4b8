"""Instruction counts (valgrind's callgrind): the same on every run, whatever the machine's load."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence


def instructions(command: Sequence[str], env: Mapping[str, str], label: str, *options: str) -> int:
    """Instructions `command` executes (only where `options` let callgrind collect, if any)."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *options, *command],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode or not found:
        raise RuntimeError(f"{label} failed under valgrind:\n{result.stderr[-3000:]}")
    return int(found.group(1))
