"""The whole health-check story in a real browser (issue #20, item 7): a connected mailbox, its credentials
stop working on the mail server's side (the simulators' controls), a check runs (the dashboard's "Check now":
the API queues it, the checker takes it from ChecksQueue through the local SQS event source), the dashboard
shows the agent needs reconnecting, the owner follows the reconnect email's link, the connect page says what
happened and asks only for what is needed, and the tick is back. Certificate checks stay on."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.conftest import RunningStack
from tests.e2e.pages import CONNECTED, ConnectPage, Dashboard, OpenInvite, SentMail

pytestmark = pytest.mark.browser

RECONNECT_SUBJECT = "Your mailbox {} stopped connecting: please reconnect it"


def _until(what: str, probe: Callable[[], Any], budget: float = 90) -> Any:
    """`probe()` once truthy, polled (a budget no loaded machine reaches); else the test fails, naming it."""
    deadline = time.monotonic() + budget
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {budget} s: {what}")
        time.sleep(0.25)
    return found


def _control(stack: RunningStack, action: str, target: str, **values: str) -> None:
    answer = requests.post(
        f"{stack.base_url}/_local/simulators/{action}", json={"target": target, **values}, timeout=10
    )
    assert answer.status_code == 200, answer.text


class Story:
    """What the test reads besides the pages: the agent's status over the API, the reconnect email."""

    def __init__(self, stack: RunningStack, sent_mail: SentMail) -> None:
        self.stack = stack
        self.sent_mail = sent_mail
        self.headers = {"Authorization": f"Bearer {stack.token('demo')}"}

    def agent(self, email: str) -> dict[str, Any]:
        listed = requests.get(f"{self.stack.base_url}/agents?limit=100", headers=self.headers, timeout=10)
        found: dict[str, Any] = next(a for a in listed.json()["items"] if a["email"] == email)
        return found

    def wait_status(self, email: str, status: str) -> dict[str, Any]:
        found: dict[str, Any] = _until(
            f"{email} {status}", lambda: (a := self.agent(email))["status"] == status and a
        )
        return found

    def reconnect_link(self, email: str) -> str:
        def found() -> list[dict[str, Any]]:
            subject = RECONNECT_SUBJECT.format(email)
            return [e for e in self.sent_mail.emails() if e["to"] == email and e["subject"] == subject]

        (reconnect,) = _until(f"the reconnect email to {email}", found)  # exactly one
        return str(reconnect["link"])


@pytest.fixture
def story(local_stack: RunningStack, sent_mail: SentMail) -> Story:
    return Story(local_stack, sent_mail)


@pytest.fixture
def tess(local_stack: RunningStack) -> Iterator[str]:
    """Tess's mailbox; her password as the scenarios say again afterwards (the stack is the session's)."""
    yield "tess@chain.test"
    _control(local_stack, "password", "tess@chain.test", value="Tess-Pass-30")


def test_an_exchange_mailbox_whose_password_changed_loses_its_tick_and_gets_it_back(
    page: Any,
    local_stack: RunningStack,
    open_invite: OpenInvite,
    connect: ConnectPage,
    dashboard: Dashboard,
    story: Story,
    tess: str,
) -> None:
    # Given Tess's mailbox connected from the dashboard's invite
    open_invite("Tess", tess)
    connect.sign_in("Tess-Pass-30")
    connect.heading("Your mailbox is connected")
    story.wait_status(tess, "verified")
    assert dashboard.status_of(tess) == CONNECTED

    # When Tess changes her password on her Exchange server (the simulator's control)
    _control(local_stack, "password", tess, value="Tess-New-Pass-31")
    # ... and a check runs (the admin presses "Check now": queued, then taken by the checker)
    dashboard.open().row(tess).get_by_role("button", name="Check now").click()

    # Then the dashboard shows the agent needs reconnecting, and why
    story.wait_status(tess, "needs_reconnect")
    assert dashboard.status_of(tess) == "Needs reconnect: wrong password"
    assert (
        "The server no longer accepts the password." in dashboard.row(tess).locator("td.health").inner_text()
    )

    # When Tess follows the reconnect email's link
    connect.open(story.reconnect_link(tess))
    # Then the page says what happened and asks only for the new password (address kept, no provider choice)
    connect.heading("Reconnect your mailbox")
    body = page.locator("main").inner_text()
    assert "stopped connecting" in body
    assert "the server no longer accepts the password" in body
    assert page.locator("input[type=password]").count() == 1
    assert page.locator("input[name=email]").get_attribute("readonly") is not None
    assert page.get_by_role("link", name="Microsoft 365 (work or school account)").count() == 0
    # When she enters the new password
    page.fill("input[name=password]", "Tess-New-Pass-31")
    page.click("button[type=submit]")
    # Then her mailbox is connected again, and the dashboard shows the tick
    connect.heading("Your mailbox is connected")
    story.wait_status(tess, "verified")
    assert dashboard.status_of(tess) == CONNECTED


def test_a_microsoft_365_mailbox_whose_sessions_were_revoked_signs_in_again_and_gets_its_tick(
    page: Any,
    local_stack: RunningStack,
    open_invite: OpenInvite,
    connect: ConnectPage,
    dashboard: Dashboard,
    story: Story,
) -> None:
    owner = "noah@m365.test"
    # Given Noah's Microsoft 365 mailbox connected with "Sign in with Microsoft"
    open_invite("Noah", owner)
    connect.sign_in_with_microsoft(owner)
    connect.heading("Your mailbox is connected")
    story.wait_status(owner, "verified")
    assert dashboard.status_of(owner) == CONNECTED

    # When his organisation revokes his sessions (refresh tokens revoked: AADSTS50173 at the next refresh)
    _control(local_stack, "revoke", owner)
    # ... and a check runs
    dashboard.open().row(owner).get_by_role("button", name="Check now").click()

    # Then the dashboard shows the agent needs reconnecting: Microsoft's sign-in is no longer valid
    story.wait_status(owner, "needs_reconnect")
    assert dashboard.status_of(owner) == "Needs reconnect: Microsoft sign-in no longer valid"

    # When Noah follows the reconnect email's link
    connect.open(story.reconnect_link(owner))
    # Then the page says what happened and asks only to sign in with Microsoft again: no password
    connect.heading("Reconnect your mailbox")
    assert "Microsoft no longer accepts the sign-in" in page.locator("main").inner_text()
    assert page.locator("input[type=password]").count() == 0
    # When he signs in with Microsoft again
    connect.sign_in_with_microsoft(owner)
    # Then his mailbox is connected again, with its tick
    connect.heading("Your mailbox is connected")
    story.wait_status(owner, "verified")
    assert dashboard.status_of(owner) == CONNECTED
