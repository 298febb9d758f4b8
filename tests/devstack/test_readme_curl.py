"""The README's curl walk-through, run as a reader pastes it (bash, curl) against the local stack: it works
on whatever the tenant holds, and again right after."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import RunningStack

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Try it with curl (against `make dev`)"
BASH = shutil.which("bash") or "/bin/bash"


def _blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def _run(script: str, stack: RunningStack) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    done = subprocess.run(
        [BASH, "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env={**env, "API": stack.base_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.splitlines()


def _check_walkthrough(lines: list[str], stack: RunningStack) -> None:
    agent, link, resent, listed, _trace, duplicate, invalid, no_token, openapi = lines
    assert '"email": "alice@contoso.test"' in agent or '"email":"alice@contoso.test"' in agent
    assert re.fullmatch(rf"{re.escape(stack.base_url)}/connect/[A-Za-z0-9_-]{{43}}", link)
    assert resent == "202"
    assert "('alice@contoso.test'," in listed
    assert (duplicate, no_token, openapi) == ("409", "401", "200")
    assert invalid == "['name', 'email', 'type']"


def test_the_readme_curl_walkthrough_works_on_any_tenant_state_twice_in_a_row(
    local_stack: RunningStack,
) -> None:
    walkthrough, removal = _blocks()
    # Given the tenant may or may not hold Alice already: a first run leaves her there
    _check_walkthrough(_run(walkthrough, local_stack), local_stack)
    # When the walk-through runs again (Alice exists: the 409 names her), then she is removed
    lines = _run(walkthrough + removal, local_stack)
    # Then every step worked, and the removal is 204, 204 again, then 404
    _check_walkthrough(lines[:-3], local_stack)
    assert lines[-3:] == ["204", "204", "404"]
    # And from a tenant without her, the whole of it works once more
    lines = _run(walkthrough + removal, local_stack)
    _check_walkthrough(lines[:-3], local_stack)
    assert lines[-3:] == ["204", "204", "404"]
