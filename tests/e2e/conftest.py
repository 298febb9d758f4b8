"""Real-browser tests: Playwright driving Debian's Chromium against the running local stack."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import RunningStack
from tests.e2e.pages import ConnectPage, Dashboard, OpenInvite, SentMail

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` package (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)  # budgets no loaded machine reaches
    yield page
    context.close()


# ------------------------------------------------------------------ the people's pages (tests/e2e/pages.py)


@pytest.fixture
def dashboard(page: Any, local_stack: RunningStack) -> Dashboard:
    return Dashboard(page, local_stack)


@pytest.fixture
def sent_mail(local_stack: RunningStack) -> SentMail:
    return SentMail(local_stack)


@pytest.fixture
def connect(page: Any) -> ConnectPage:
    return ConnectPage(page)


@pytest.fixture
def open_invite(dashboard: Dashboard, sent_mail: SentMail, connect: ConnectPage) -> OpenInvite:
    """The onboarding's first steps: the admin adds the agent ``(name, email)`` in the dashboard, the invite
    is sent, and its owner opens the link (returned) on the connect page."""

    def steps(name: str, email: str) -> str:
        dashboard.open().add_agent(name, email)
        # The email shows in the sent-mail folder as soon as SES took it, a moment before the sender records
        # it (`invited`); a link opened in between is "no longer valid" (410). Wait for the sender to finish.
        dashboard.page.wait_for_function(
            "email => [...document.querySelectorAll('tr')].some(r => r.textContent.includes(email)"
            " && r.dataset.status && r.dataset.status !== 'invite_pending')",
            arg=email,
        )
        link = sent_mail.invite_to(email)
        connect.open(link)
        return link

    return steps
