"""Page objects for the browser tests: what the admin does in the dashboard, what the local stack's sent-mail
folder holds, and what the mailbox owner does on our connect page (and on Microsoft's pages), one method a
step, so that the tests read as the story they tell."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests
import yaml

from devstack.identity_sim.scenarios import SCENARIOS_FILE
from tests.conftest import RunningStack

# The identity simulator's users and their passwords (the people on Microsoft's sign-in page).
M365_PASSWORDS = {
    user["address"]: user["password"] for user in yaml.safe_load(SCENARIOS_FILE.read_text())["users"]
}
CONNECTED = "Connected ✔"
# The ``open_invite`` fixture: (name, email) -> the invite's link, opened by its owner.
OpenInvite = Callable[[str, str], str]


class Dashboard:
    """The dev dashboard (tenant ``demo``), as the admin uses it."""

    def __init__(self, page: Any, stack: RunningStack) -> None:
        self.page = page
        self.stack = stack

    def open(self) -> Dashboard:
        self.page.goto(self.stack.base_url + "/")
        return self

    def submit_agent(self, name: str, email: str) -> None:
        """Fill the "add an agent" form and send it (whatever the answer)."""
        self.page.fill("input[name=name]", name)
        self.page.fill("input[name=email]", email)
        self.page.click("button[type=submit]")

    def add_agent(self, name: str, email: str) -> Any:
        """Add an agent from the open dashboard; its row, once listed."""
        self.submit_agent(name, email)
        row = self.row(email)
        row.wait_for()
        return row

    def row(self, email: str) -> Any:
        return self.page.locator("tr", has_text=email)

    def resend_invite(self, email: str) -> None:
        self.row(email).get_by_role("button", name="Resend invite").click()

    def status_of(self, email: str) -> str:
        """The agent's status as the dashboard words it, read afresh once the list has a status for it."""
        self.open()
        row = self.row(email)
        row.wait_for()
        self.page.wait_for_function(
            "email => [...document.querySelectorAll('tr')]"
            ".some(r => r.textContent.includes(email) && r.dataset.status)",
            arg=email,
        )
        return str(row.locator("td.status").inner_text()).strip()


class SentMail:
    """The local stack's sent-mail folder (``/_local/emails``): every email the stack "sent"."""

    def __init__(self, stack: RunningStack) -> None:
        self.stack = stack

    def emails(self) -> list[dict[str, Any]]:
        """Every email sent so far, newest first: to, subject, text, html, link."""
        sent: list[dict[str, Any]] = requests.get(f"{self.stack.base_url}/_local/emails", timeout=10).json()
        return sent

    def invite_links(self, email: str) -> list[str]:
        """The links of the invites to ``email``, oldest first (the folder lists the newest first)."""
        return [e["link"] for e in reversed(self.emails()) if e["to"] == email]

    def invite_to(self, email: str, count: int = 1) -> str:
        """The connect link of the ``count``-th invite sent to ``email``, once it has been sent."""
        deadline = time.monotonic() + 60  # a budget no loaded machine reaches (the stream sends at once)
        while time.monotonic() < deadline:
            links = self.invite_links(email)
            if len(links) >= count:
                return links[-1]
            time.sleep(0.2)
        raise AssertionError(f"no invite email to {email}")


class ConnectPage:
    """Our connect page, as the mailbox owner uses it after opening the invite's link."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def open(self, link: str) -> Any:
        """Open the invite's link; the HTTP response of the page."""
        return self.page.goto(link)

    def heading(self, text: str, timeout: float = 60_000) -> None:
        """Wait until the page's heading says ``text``."""
        self.page.locator("h1", has_text=text).wait_for(timeout=timeout)

    def sign_in(self, password: str, *, username: str = "", server: str = "") -> None:
        """The Exchange form (preselected for an address that is not Microsoft 365): password, and the
        advanced settings when given."""
        assert self.page.locator("#provider-exchange").get_attribute("aria-current") == "page"
        self.page.fill("input[name=password]", password)
        if username or server:
            self.page.click("summary")
            self.page.fill("form input[name=username]", username)
            self.page.fill("form input[name=server]", server)
        self.page.click("button[type=submit]")

    def try_password(self, password: str) -> None:
        """The failure page's form: the password again."""
        self.page.fill("input[name=password]", password)
        self.page.click("button[type=submit]")

    def enter_settings(self, username: str, server: str) -> None:
        """The "few more details" page: the username and the server from the Outlook on the web address."""
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=server]", server)
        self.page.click("button[type=submit]")

    def it_details(self) -> str:
        """Unfold the details for IT and read them."""
        self.page.click("#it-details summary")
        return str(self.page.locator("#it-details pre").inner_text())

    def sign_in_with_microsoft(self, account: str, *, consent: str = "Accept") -> None:
        """On our page: the button; on Microsoft's: the account, its password, and the consent choice."""
        page = self.page
        page.get_by_role("button", name="Sign in with Microsoft").click()
        page.locator("form#signin").wait_for()
        page.fill("input[name=login]", account)
        page.fill("input[name=passwd]", M365_PASSWORDS[account])
        page.click("#idSIButton9")
        # Next: Microsoft's consent page, its "need admin approval" page, or (consented before) our page
        page.wait_for_selector("form#consent, form#approval, main.card")
        if page.locator("form#consent").count():
            assert consent, "a consent page was not expected"
            page.get_by_role("button", name=consent).click()
        elif page.locator("form#approval").count():
            page.locator("form#approval button").click()
