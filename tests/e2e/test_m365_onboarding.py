"""Microsoft 365 onboarding end to end in a real browser: the admin adds the mailbox in the dashboard,
the owner opens the invite, presses "Sign in with Microsoft", signs in and consents on Microsoft's pages
(the identity simulator's), and lands back on our page; each outcome ends on its own plain page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import RunningStack
from tests.e2e.pages import CONNECTED, ConnectPage, Dashboard, OpenInvite

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # Certificate checks on, as in a person's browser: the local stack serves the identity simulator's
    # sign-in pages on its own origin, so no page the browser opens needs the simulator's throw-away CA.
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def test_a_microsoft_365_mailbox_signs_in_with_microsoft_and_gets_its_tick(
    page: Any,
    local_stack: RunningStack,
    open_invite: OpenInvite,
    connect: ConnectPage,
    dashboard: Dashboard,
) -> None:
    # Given the owner of a Microsoft 365 mailbox opens the invite
    open_invite("Owner", "mia@m365.test")
    # Then the page routed the address before any password: no password field, the Microsoft button instead
    assert page.locator("input[type=password]").count() == 0
    assert (
        page.get_by_role("link", name="Microsoft 365 (work or school account)").get_attribute("aria-current")
        == "page"
    )
    # When the owner presses "Sign in with Microsoft"
    page.get_by_role("button", name="Sign in with Microsoft").click()
    page.locator("form#signin").wait_for()
    # Then Microsoft's sign-in page (the simulator's) opens on the stack's own plain-HTTP loopback origin, so
    # a browser with certificate checks on shows it without a warning, at the same address after a restart
    assert page.url.startswith(f"{local_stack.base_url}/_local/login/organizations/oauth2/v2.0/authorize?")
    page.go_back()
    # When the owner signs in with Microsoft and consents
    connect.sign_in_with_microsoft("mia@m365.test")
    # Then the owner is back on our page, the mailbox connected, with its tick in the dashboard
    assert page.url.startswith(local_stack.base_url)
    connect.heading("Your mailbox is connected")
    assert dashboard.status_of("mia@m365.test") == CONNECTED


def test_an_alias_invite_is_connected_by_the_accounts_proxy_addresses(
    open_invite: OpenInvite, connect: ConnectPage
) -> None:
    # Given an invite to an alias of Olivia's mailbox
    open_invite("Owner", "sales@m365.test")
    # When Olivia signs in with her own account
    connect.sign_in_with_microsoft("olivia@m365.test")
    # Then the mailbox is connected: the alias is one of the account's proxy addresses
    connect.heading("Your mailbox is connected")


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
    page: Any,
    local_stack: RunningStack,
    open_invite: OpenInvite,
    connect: ConnectPage,
    invited: str,
    account: str,
    consent: str,
    heading: str,
    forward: str,
) -> None:
    # Given an invite opened by its owner
    open_invite("Owner", invited)
    # When the owner signs in with Microsoft as ``account`` and makes the ``consent`` choice
    connect.sign_in_with_microsoft(account, consent=consent)
    # Then our own page says what happened, with a way forward
    connect.heading(heading, timeout=60_000)
    assert page.url.startswith(local_stack.base_url)
    if forward == "admin":
        link = page.locator("#admin-consent-link")
        assert str(link.get_attribute("href")).startswith(
            f"{local_stack.base_url}/_local/login/strict-m365.test/adminconsent?client_id="
        )
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
