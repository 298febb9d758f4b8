"""Each state of the owner's connect page and of the dev dashboard, photographed at desktop width (1280 px)
and on a phone (390 px) for a person to look at (issue 19), while the story asserts what each state says.

The PNGs go to ``.e2e-screenshots/`` at the top of the repository (git ignores it), or to the folder named
by ``E2E_SCREENSHOTS``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningStack
from tests.e2e.pages import CONNECTED, ConnectPage, Dashboard, SentMail

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


class Camera:
    def __init__(self, page: Any, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.taken: list[Path] = []

    def shoot(self, name: str) -> None:
        """The page as it is now, at both widths (full page), then back at desktop width."""
        for label, (width, height) in WIDTHS.items():
            self.page.set_viewport_size({"width": width, "height": height})
            path = self.folder / f"{len(self.taken) // 2 + 1:02d}-{name}-{label}.png"
            self.page.screenshot(path=str(path), full_page=True)
            self.taken.append(path)
        self.page.set_viewport_size({"width": WIDTHS["desktop"][0], "height": WIDTHS["desktop"][1]})


@pytest.fixture
def camera(page: Any) -> Camera:
    folder = Path(os.environ.get("E2E_SCREENSHOTS") or ROOT / ".e2e-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    page.set_viewport_size({"width": WIDTHS["desktop"][0], "height": WIDTHS["desktop"][1]})
    return Camera(page, folder)


def test_every_state_of_the_connect_page_and_the_dashboard_photographed(
    page: Any,
    local_stack: RunningStack,
    camera: Camera,
    dashboard: Dashboard,
    sent_mail: SentMail,
    connect: ConnectPage,
) -> None:
    # The dashboard's add form, filled in (its hints under the fields)
    dashboard.open()
    page.fill("input[name=name]", "Bob Baker")
    page.fill("input[name=email]", "bob@contoso.test")
    page.fill("input[name=inviterName]", "Contoso Support")
    camera.shoot("dashboard-add-form")
    page.click("#add-agent button[type=submit]")
    dashboard.row("bob@contoso.test").wait_for()
    for name, email in (("Olivia Hart", "olivia.hart@m365.test"), ("Liam", "liam@vanarsdel.test")):
        page.fill("input[name=inviterName]", "Contoso Support")
        dashboard.add_agent(name, email)

    # Exchange form (routed: an on-premises address), and the Microsoft 365 choice
    connect.open(sent_mail.invite_to("bob@contoso.test"))
    assert page.locator("p.lead").inner_text().startswith("Contoso Support invited you")
    camera.shoot("connect-exchange-form")
    page.click("#provider-m365")
    page.get_by_role("button", name="Sign in with Microsoft").wait_for()
    camera.shoot("connect-m365-choice")
    page.click("#provider-exchange")

    # A refusal in doubt: bob's server names its domain CONTOSO and he typed a wrong password
    connect.sign_in("Not-Bobs-Password-1")
    connect.heading("We could not connect your mailbox")
    assert "Either the password is wrong" in page.locator("[role=alert]").inner_text()
    camera.shoot("connect-domain-hint")
    # The button: the advanced settings open with CONTOSO\bob
    page.get_by_role("button", name="Sign in as CONTOSO\\bob").click()
    assert page.locator("input[name=username]").input_value() == "CONTOSO\\bob"
    camera.shoot("connect-advanced-settings")
    page.keyboard.type("Bob-Pass-2")
    page.get_by_role("button", name="Connect mailbox").click()
    connect.heading("Your mailbox is connected")
    page.locator("#return-button").wait_for()
    page.evaluate("document.querySelector('meta[http-equiv=refresh]')?.remove()")  # stay for the photo
    camera.shoot("connect-connected")

    # A plain wrong password (liam's server names no Windows domain): counted, nothing suggested
    connect.open(sent_mail.invite_to("liam@vanarsdel.test"))
    connect.sign_in("Not-Liams-Password-1")
    connect.heading("We could not connect your mailbox")
    assert page.locator("#suggested-login").count() == 0
    assert page.locator("#tries-left").inner_text() == "9 tries left before this link locks."
    camera.shoot("connect-wrong-password")

    # Microsoft 365: routed to Sign in with Microsoft, connected
    connect.open(sent_mail.invite_to("olivia.hart@m365.test"))
    assert page.locator("#provider-m365").get_attribute("aria-current") == "page"
    camera.shoot("connect-m365-routed")
    connect.sign_in_with_microsoft("olivia@m365.test")
    connect.heading("Your mailbox is connected")

    # A link that has done its job
    connect.open(sent_mail.invite_to("bob@contoso.test"))
    connect.heading("already used")
    camera.shoot("connect-link-used")

    # The dashboard: the list, and the removal questions, each naming what is deleted
    assert dashboard.status_of("bob@contoso.test") == CONNECTED
    assert dashboard.status_of("olivia.hart@m365.test") == CONNECTED
    camera.shoot("dashboard-list")
    row = dashboard.row("olivia.hart@m365.test")
    row.get_by_role("button", name="Remove").click()
    question = row.locator(".confirm").inner_text()
    assert question.endswith("Monitoring stops and its Microsoft sign-in (refresh token) is deleted.")
    assert "password" not in question
    camera.shoot("dashboard-remove-m365")
    row.get_by_role("button", name="Cancel").click()
    row = dashboard.row("bob@contoso.test")
    row.get_by_role("button", name="Remove").click()
    assert (
        row.locator(".confirm").inner_text().endswith("Monitoring stops and its stored password is deleted.")
    )
    camera.shoot("dashboard-remove-password")
    row.get_by_role("button", name="Cancel").click()

    assert len(camera.taken) == 2 * 12
