"""Microsoft 365 onboarding end to end in a real browser: the admin adds the mailbox in the dashboard,
the owner opens the invite, presses "Sign in with Microsoft", signs in and consents on Microsoft's pages
(the identity simulator's), and lands back on our page; each outcome ends on its own plain page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from devstack.identity_sim.scenarios import SCENARIOS_FILE
from tests.conftest import RunningStack
from tests.e2e.test_onboarding import add_agent_in_dashboard, tick_shown, wait_for_heading, wait_for_invite

pytestmark = pytest.mark.browser
PASSWORDS = {
    user["address"]: user["password"] for user in yaml.safe_load(SCENARIOS_FILE.read_text())["users"]
}


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # The simulator's certificate comes from a throw-away CA the test browser cannot know; a person's
    # browser trusts Microsoft's real one. Our own code keeps certificate checks on.
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def open_invite(page: Any, stack: RunningStack, address: str) -> None:
    add_agent_in_dashboard(page, stack, "Owner", address)
    page.goto(wait_for_invite(stack, address))


def sign_in_with_microsoft(page: Any, account: str, *, consent: str = "Accept") -> None:
    """On our page: the button; on Microsoft's: the account, its password, and the consent choice."""
    page.get_by_role("button", name="Sign in with Microsoft").click()
    page.locator("form#signin").wait_for()
    page.fill("input[name=login]", account)
    page.fill("input[name=passwd]", PASSWORDS[account])
    page.click("#idSIButton9")
    # Next: Microsoft's consent page, its "need admin approval" page, or (consented before) our page
    page.wait_for_selector("form#consent, form#approval, main.card")
    if page.locator("form#consent").count():
        assert consent, "a consent page was not expected"
        page.get_by_role("button", name=consent).click()
    elif page.locator("form#approval").count():
        page.locator("form#approval button").click()


def test_a_microsoft_365_mailbox_signs_in_with_microsoft_and_gets_its_tick(
    page: Any, local_stack: RunningStack
) -> None:
    open_invite(page, local_stack, "mia@m365.test")
    # The page routed the address before any password: no password field, the Microsoft button instead
    assert page.locator("input[type=password]").count() == 0
    assert (
        page.get_by_role("link", name="Microsoft 365 (work or school account)").get_attribute("aria-current")
        == "page"
    )
    sign_in_with_microsoft(page, "mia@m365.test")
    assert page.url.startswith(local_stack.base_url)  # back on our page
    wait_for_heading(page, "Your mailbox is connected")
    assert tick_shown(page, local_stack, "mia@m365.test")


def test_an_alias_invite_is_connected_by_the_accounts_proxy_addresses(
    page: Any, local_stack: RunningStack
) -> None:
    open_invite(page, local_stack, "sales@m365.test")
    sign_in_with_microsoft(page, "olivia@m365.test")
    wait_for_heading(page, "Your mailbox is connected")


@pytest.mark.parametrize(
    ("invited", "account", "consent", "heading", "forward"),
    [
        ("grace@m365.test", "grace@m365.test", "Cancel", "You did not allow access", "microsoft"),
        (
            "ben@strict-m365.test",
            "ben@strict-m365.test",
            "",
            "Your IT department needs to approve this app",
            "admin",
        ),
        ("carl@m365.test", "carl@m365.test", "Accept", "Your organisation blocked this sign-in", "microsoft"),
        ("dan@m365.test", "dan@m365.test", "Accept", "Your account is disabled", "microsoft"),
        (
            "zoe@dormant-m365.test",
            "zoe@dormant-m365.test",
            "Accept",
            "Your organisation's Microsoft 365 is not available",
            "microsoft",
        ),
        (
            "grace@m365.test",
            "fiona@fedcorp-m365.test",
            "Accept",
            "You signed in with another account",
            "microsoft",
        ),
        ("ava@m365.test", "ava@m365.test", "Accept", "No Microsoft 365 mailbox for this account", "exchange"),
        ("ethan@m365.test", "ethan@m365.test", "Accept", "Your mailbox may not be read by apps", "microsoft"),
        (
            "henry@m365.test",
            "henry@m365.test",
            "Accept",
            "Microsoft 365 did not answer properly",
            "microsoft",
        ),
        ("tom@m365.test", "tom@m365.test", "Accept", "Microsoft did not answer in time", "microsoft"),
    ],
)
def test_each_outcome_ends_on_its_own_plain_page_with_a_way_forward(
    page: Any, local_stack: RunningStack, invited: str, account: str, consent: str, heading: str, forward: str
) -> None:
    open_invite(page, local_stack, invited)
    sign_in_with_microsoft(page, account, consent=consent)
    wait_for_heading(page, heading, timeout=60_000)
    assert page.url.startswith(local_stack.base_url)
    if forward == "admin":
        link = page.locator("#admin-consent-link")
        assert "/adminconsent?client_id=" in str(link.get_attribute("href"))
    if forward == "exchange":
        assert (
            page.get_by_role(
                "link", name="Connect with the Microsoft Exchange (on-premises) form instead"
            ).count()
            == 1
        )
    if account != invited:
        assert f"this invite is for {invited}" in page.content()
    assert page.get_by_role("button", name="Sign in with Microsoft").count() == 1
