"""The simulators' controls for people (devstack/controls.py): the page, its JSON and the CLI, through the
running local stack (its simulators run inside it). What each control does to the protocols is proven against
the simulators themselves (test_exchange_sim.py, test_identity_sim.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack.__main__ import main
from tests.conftest import RunningStack

MAILBOX = "liam@vanarsdel.test"  # this file's own mailbox and user: no other local-stack test signs them in
USER = "fiona@fedcorp-m365.test"


@pytest.fixture
def stack(local_stack: RunningStack) -> Iterator[RunningStack]:
    yield local_stack
    # Given back as the scenarios say, whatever a test changed (the stack is shared by the session)
    reset = requests.post(
        f"{local_stack.base_url}/_local/simulators/reset", json={"target": "all"}, timeout=10
    )
    assert reset.status_code == 200


def state(stack: RunningStack) -> dict[str, Any]:
    response = requests.get(f"{stack.base_url}/_local/simulators/state.json", timeout=10)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def mailbox(stack: RunningStack, email: str = MAILBOX) -> dict[str, Any]:
    return next(v for v in state(stack)["exchange"] if v["email"] == email)


def user(stack: RunningStack, address: str = USER) -> dict[str, Any]:
    return next(v for v in state(stack)["microsoft"] if v["address"] == address)


def control(stack: RunningStack, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["control", *args, "--api", stack.base_url])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_page_lists_mailboxes_and_users_with_post_forms_and_no_password(stack: RunningStack) -> None:
    page = requests.get(f"{stack.base_url}/_local/simulators", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    for name in (MAILBOX, "alice@contoso.test", USER, "mia@m365.test"):
        assert name in page.text
    assert 'method="post" action="/_local/simulators/lock"' in page.text
    assert 'action="/_local/simulators/revoke"' in page.text
    assert 'method="get"' not in page.text.lower()
    assert "Liam-Pass-23" not in page.text
    assert "Alice-Pass-1" not in page.text


def test_a_form_post_acts_and_comes_back_to_the_page(stack: RunningStack) -> None:
    # When a person presses "Lock" on the page (a form post from the page's own origin)
    response = requests.post(
        f"{stack.base_url}/_local/simulators/lock",
        data={"target": MAILBOX},
        headers={"Origin": stack.base_url, "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
        timeout=10,
    )
    # Then the page comes back saying what changed, and the mailbox is locked
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/_local/simulators?message=")
    assert mailbox(stack)["locked"] is True
    page = requests.get(f"{stack.base_url}{response.headers['Location']}", timeout=10)
    assert f"{MAILBOX}: account locked until unlocked" in page.text
    assert "locked" in page.text
    # And a bad value comes back as an error on the page, changing nothing
    bad = requests.post(
        f"{stack.base_url}/_local/simulators/expire",
        data={"target": MAILBOX, "days": "soon"},
        allow_redirects=True,
        timeout=10,
    )
    assert 'class="error"' in bad.text
    assert mailbox(stack)["password_expired"] is False


def test_requests_from_elsewhere_are_refused(stack: RunningStack) -> None:
    url = f"{stack.base_url}/_local/simulators/lock"
    foreign_origin = requests.post(
        url, data={"target": MAILBOX}, headers={"Origin": "http://evil.test"}, timeout=10
    )
    other_port = requests.post(
        url, data={"target": MAILBOX}, headers={"Origin": "http://127.0.0.1:1"}, timeout=10
    )
    cross_site = requests.post(
        url, data={"target": MAILBOX}, headers={"Sec-Fetch-Site": "cross-site"}, timeout=10
    )
    foreign_host = requests.post(url, data={"target": MAILBOX}, headers={"Host": "evil.test"}, timeout=10)
    assert [r.status_code for r in (foreign_origin, other_port, cross_site, foreign_host)] == [403] * 4
    assert requests.get(url, timeout=10).status_code == 404  # actions are POST only
    assert mailbox(stack)["locked"] is False


def test_the_cli_drives_the_exchange_controls(
    stack: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # expire in 3 days: the date the server will answer GetPasswordExpirationDate with
    code, out, _ = control(stack, capsys, "expire", MAILBOX, "3")
    assert code == 0
    assert "expires on" in out
    expires = dt.datetime.fromisoformat(mailbox(stack)["password_expires"])
    assert dt.timedelta(days=2) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=3)
    # already expired, then never
    assert control(stack, capsys, "expire", MAILBOX, "-1")[0] == 0
    assert mailbox(stack)["password_expired"] is True
    assert control(stack, capsys, "expire", MAILBOX, "never")[0] == 0
    assert mailbox(stack)["password_expires"] is None
    # a new password; a lock for some minutes; the server offline and back
    assert control(stack, capsys, "password", MAILBOX, "Liam-New-24")[0] == 0
    assert mailbox(stack)["password_changed"] is True
    assert control(stack, capsys, "lock", MAILBOX, "--minutes", "30")[0] == 0
    assert mailbox(stack)["locked_until"] is not None
    assert control(stack, capsys, "offline", MAILBOX, "--how", "503")[0] == 0
    assert mailbox(stack)["offline_hosts"] == ["mail.vanarsdel.test"]
    assert state(stack)["offline"] == {"mail.vanarsdel.test": "503"}
    assert control(stack, capsys, "online", MAILBOX)[0] == 0
    assert mailbox(stack)["offline_hosts"] == []
    # the domain's lockout policy
    assert control(stack, capsys, "lockout", "domain", "5", "--duration", "15")[0] == 0
    assert state(stack)["lockout"] == {"threshold": 5, "window": 1800.0, "duration": 900.0}
    # status prints the mailbox's state
    code, out, _ = control(stack, capsys, "status", MAILBOX)
    assert code == 0
    assert '"email": "liam@vanarsdel.test"' in out
    # reset: back as the scenario says
    assert control(stack, capsys, "reset")[0] == 0
    assert mailbox(stack)["password_changed"] is False
    assert mailbox(stack)["locked"] is False


def test_the_cli_drives_the_microsoft_controls(
    stack: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert control(stack, capsys, "disable", USER)[0] == 0
    assert user(stack)["disabled"] is True
    assert control(stack, capsys, "enable", USER)[0] == 0
    assert control(stack, capsys, "lock", USER)[0] == 0
    assert user(stack)["locked"] is True
    assert control(stack, capsys, "unlock", USER)[0] == 0
    assert control(stack, capsys, "offline", USER)[0] == 0
    assert user(stack)["outage"] is True
    assert control(stack, capsys, "online", USER)[0] == 0
    code, out, _ = control(stack, capsys, "revoke", USER)
    assert code == 0
    assert "AADSTS50173" in out
    assert control(stack, capsys, "withdraw-consent", USER)[0] == 0
    now = user(stack)
    assert (now["disabled"], now["locked"], now["outage"]) == (False, False, False)
    # everyone's outage, and its end
    assert control(stack, capsys, "offline", "microsoft")[0] == 0
    assert all(v["outage"] for v in state(stack)["microsoft"])
    assert control(stack, capsys, "online", "microsoft")[0] == 0
    assert not any(v["outage"] for v in state(stack)["microsoft"])


def test_the_cli_says_what_is_wrong(stack: RunningStack, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = control(stack, capsys, "lock", "nobody@nowhere.test")
    assert code == 1
    assert "nobody@nowhere.test" in err
    code, _, err = control(stack, capsys, "revoke", MAILBOX)  # not a Microsoft 365 user
    assert code == 1
    assert MAILBOX in err
    assert main(["control", "status", "--api", "http://example.com"]) == 2
