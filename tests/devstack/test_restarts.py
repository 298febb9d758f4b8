"""The local stack as a newcomer runs it twice: a second one on a taken port says so and exits, and a
restart keeps the agents, their invite links and the sent emails."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import requests

from devstack.stack import free_port
from tests.conftest import ROOT

ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))},
    "PYTHONPATH": f"{ROOT / 'layers' / 'common'}{os.pathsep}{ROOT}",
}


def devstack(*args: str) -> list[str]:
    return [sys.executable, "-m", "devstack", "run", *args]


@contextmanager
def running(state_dir: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port, moto_port = free_port(), free_port()
    args = devstack("--port", str(port), "--moto-port", str(moto_port), "--state-dir", str(state_dir))
    with log.open("w") as out:
        process = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not (_healthy(base) and "Ctrl-C stops it." in log.read_text()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the local stack did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # what Ctrl-C sends
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/_local/health", timeout=1).ok
    except requests.RequestException:
        return False


def _emails(base: str, address: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        found = [
            e for e in requests.get(f"{base}/_local/emails.json", timeout=5).json() if e["to"] == address
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_taken_port_is_named_and_the_stack_exits(tmp_path: Path) -> None:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args in (("--port", str(port), "--moto-port", str(free_port())), ("--moto-port", str(port))):
            if args[0] == "--moto-port":
                args = ("--port", str(free_port()), *args)
            result = subprocess.run(
                devstack("--fresh", *args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 1
            assert f"port {port}" in result.stderr
            assert "is in use" in result.stderr
            assert "--port 3100 --moto-port 5101" in result.stderr  # what to do instead
            assert "Traceback" not in result.stderr


def test_a_restart_keeps_agents_invite_links_and_emails(tmp_path: Path) -> None:
    from devstack import tokens

    headers = {"Authorization": f"Bearer {tokens.mint('demo')}"}
    body = {"name": "Rita Restart", "email": "rita.restart@contoso.test", "type": "ms_exchange"}
    state = tmp_path / "state"
    with running(state, tmp_path / "first.log") as (base, _):
        agent = requests.post(f"{base}/agents", json=body, headers=headers, timeout=10).json()
        (sent,) = _emails(base, body["email"])
        # A second stack with the same state refuses to start, and says why.
        second = subprocess.run(
            devstack("--port", str(free_port()), "--moto-port", str(free_port()), "--state-dir", str(state)),
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1
        assert "another one is running" in second.stderr

    with running(state, tmp_path / "second.log") as (base, _):
        assert "brought back 1 agent(s) and 1 email(s)" in (tmp_path / "second.log").read_text()
        shown = requests.get(f"{base}/agents/{agent['agentId']}", headers=headers, timeout=10)
        assert shown.status_code == 200
        assert shown.json()["status"] == "invited"
        (kept,) = _emails(base, body["email"])
        assert kept["link"] == sent["link"]
        assert kept["run"] == 1
        # The old link now points at the old port; the invite behind it still works on the new one.
        token = sent["link"].rsplit("/", 1)[1]
        page = requests.get(f"{base}/connect/{token}", timeout=10)
        assert page.status_code == 200
        assert "Connect your mailbox" in page.text
        html = requests.get(f"{base}/_local/emails", headers={"Accept": "text/html"}, timeout=10)
        assert "run 1 (before a restart)" in html.text


NONCE = re.compile(r'name="nonce"\s+value="([^"]+)"')


def _status(base: str, token: str, wanted: str) -> dict[str, Any]:
    """The connect page's status once it is `wanted` (a generous budget: the workflow runs Exchange
    discovery against the simulator)."""
    deadline = time.monotonic() + 120
    while True:
        answer = requests.get(
            f"{base}/connect/{token}/status", headers={"Accept": "application/json"}, timeout=30
        ).json()
        if answer["status"] == wanted or time.monotonic() > deadline:
            assert answer["status"] == wanted, answer
            return dict(answer)
        time.sleep(0.2)


def _form_post(base: str, page_path: str, path: str, form: dict[str, str]) -> int:
    """Post a form of the connect page as a browser does: the nonce of the page it is on, our Origin."""
    page = requests.get(f"{base}{page_path}", timeout=30)
    found = NONCE.search(page.text)
    assert found, page.text
    answer = requests.post(
        f"{base}{path}",
        data={**form, "nonce": found.group(1)},
        headers={"Origin": base},
        allow_redirects=False,
        timeout=30,
    )
    return answer.status_code


def test_a_restart_mid_onboarding_resumes_and_the_password_sealed_before_it_verifies(tmp_path: Path) -> None:
    """Dave signs in, his company has no autodiscover, the page asks for the settings; the stack restarts.
    The check resumes and asks again; Dave sends only the settings, no password: the verification unseals
    the password sealed before the restart (the credentials key is the same, its material kept)."""
    from devstack import tokens

    headers = {"Authorization": f"Bearer {tokens.mint('demo')}"}
    email = "dave@adatum.test"
    state = tmp_path / "state"
    with running(state, tmp_path / "first.log") as (base, _):
        agent = requests.post(
            f"{base}/agents",
            json={"name": "Dave", "email": email, "type": "ms_exchange"},
            headers=headers,
            timeout=10,
        ).json()
        (sent,) = _emails(base, email)
        token = sent["link"].rsplit("/", 1)[1]
        path = f"/connect/{token}"
        assert _form_post(base, path, path, {"email": email, "password": "Dave-Pass-7"}) == 303
        asked = _status(base, token, "needs_settings")
        assert asked["reason"] == "autodiscover_failed"
    saved_state = (state / "state.json").read_text()
    assert "Dave-Pass-7" not in saved_state  # sealed, never in clear

    with running(state, tmp_path / "second.log") as (base, _):
        # The interrupted check runs again and asks for the settings again
        _status(base, token, "needs_settings")
        settings = {"username": "ADATUM\\dave", "server": "mail.adatum.test"}
        assert _form_post(base, f"{path}/status", f"{path}/settings", settings) == 303
        _status(base, token, "verified")
        shown = requests.get(f"{base}/agents/{agent['agentId']}", headers=headers, timeout=10).json()
        assert shown["status"] == "verified"
