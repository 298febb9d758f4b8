"""Onboarding end to end, as the people involved do it: the admin in the dashboard, the mailbox owner in
the email and on the connect page, against the local stack and its simulated Exchange servers."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from devstack.exchange_sim.scenarios import SCENARIOS_BY_NAME as S
from tests.conftest import RunningStack
from tests.e2e.pages import CONNECTED, ConnectPage, Dashboard, OpenInvite, SentMail

pytestmark = pytest.mark.browser


def test_a_connected_owner_is_taken_back_to_the_dashboard(
    page: Any, local_stack: RunningStack, open_invite: OpenInvite, connect: ConnectPage, dashboard: Dashboard
) -> None:
    # Given an agent added in the dashboard for a mailbox autodiscover finds
    scenario = S["autodiscover_subdomain"]
    # When its owner opens the invite's link and enters the right password
    link = open_invite("Bea <Support>", scenario.email)
    connect.sign_in(scenario.password)
    # Then the mailbox is connected
    connect.heading("Your mailbox is connected")
    # And the page offers the way back at once (its HTML, as served, without racing the automatic return) ...
    served = requests.get(f"{link}/status", timeout=10).text
    home = f"{local_stack.base_url}/"
    assert f'<meta http-equiv="refresh" content="5;url={home}">' in served
    assert f'href="{home}">Go to the dashboard now</a>' in served
    # ... and takes the owner there by itself, where the agent has its tick
    page.wait_for_url(home, timeout=60_000)
    assert dashboard.status_of(scenario.email) == CONNECTED
    # And the link did its job: opening it again says so, kindly
    connect.open(link)
    connect.heading("already used")


def test_without_autodiscover_the_owner_enters_advanced_settings(
    page: Any, open_invite: OpenInvite, connect: ConnectPage, dashboard: Dashboard
) -> None:
    # Given an invited mailbox whose domain has no autodiscover
    scenario = S["manual_domain_user"]
    open_invite("Dave", scenario.email)
    # When the owner signs in, the page asks for the settings Outlook on the web shows
    connect.sign_in(scenario.password)
    connect.heading("We need a few more details")
    assert "Outlook on the web" in page.content()
    # And the owner enters them
    connect.enter_settings(str(scenario.username), str(scenario.server))
    # Then the mailbox is connected
    connect.heading("Your mailbox is connected")
    assert dashboard.status_of(scenario.email) == CONNECTED


def test_a_wrong_password_is_explained_with_the_tries_left_and_the_right_one_works(
    page: Any, open_invite: OpenInvite, connect: ConnectPage, dashboard: Dashboard
) -> None:
    # Given an invited mailbox
    scenario = S["autodiscover_http_redirect"]
    open_invite("Carl", scenario.email)
    # When the owner enters a wrong password
    connect.sign_in("Not-My-Password-1")
    # Then the page says the server refused it, and how many tries are left
    connect.heading("We could not connect your mailbox")
    message = page.locator("[role=alert]").inner_text()
    assert f"did not accept the password for {scenario.email}" in message
    assert "username and password" not in message.lower()  # the owner typed no username: none is blamed
    # The server named no Windows domain: nothing suggests a DOMAIN\\user login it gave no ground for
    assert "DOMAIN" not in message
    assert "Windows sign-in" not in message
    assert page.locator("#suggested-login").count() == 0
    assert page.locator("#tries-left").inner_text() == "9 tries left before this link locks."
    # And the right one works
    connect.try_password(scenario.password)
    connect.heading("Your mailbox is connected")
    assert dashboard.status_of(scenario.email) == CONNECTED


def test_the_last_try_is_announced_and_the_tenth_wrong_password_locks_the_link(
    page: Any, open_invite: OpenInvite, connect: ConnectPage
) -> None:
    # Given an invited mailbox and nine wrong passwords
    scenario = S["autodiscover_srv"]
    open_invite("Lou", scenario.email)
    connect.sign_in("Wrong-1")
    for attempt in range(2, 10):
        connect.heading("We could not connect your mailbox")
        connect.try_password(f"Wrong-{attempt}")
    # Then the page announces the last try
    connect.heading("We could not connect your mailbox")
    warning = page.locator("#tries-left").inner_text()
    assert warning.startswith("Last try: one more wrong password locks this link")
    # When the tenth is wrong too, the link locks
    connect.try_password("Wrong-10")
    connect.heading("This link is locked")
    assert "send a new invite" in page.content()


def test_a_link_replaced_by_a_resend_shows_a_friendly_page(
    page: Any, dashboard: Dashboard, sent_mail: SentMail, connect: ConnectPage
) -> None:
    # Given an invite, and a resend from the dashboard that sent a second one (a mailbox no other test uses:
    # the agent of another test may be in a state that takes no resend)
    # (the README's curl walk-through, run by a test, invites the same address: count from what is there)
    scenario = S["autodiscover_domain"]
    before = len(sent_mail.invite_links(scenario.email))
    dashboard.open().add_agent("Alice", scenario.email)
    first = sent_mail.invite_to(scenario.email, count=before + 1)
    dashboard.resend_invite(scenario.email)
    second = sent_mail.invite_to(scenario.email, count=before + 2)
    assert second != first
    # When the owner opens the first link, the page says it was replaced
    response = connect.open(first)
    assert response.status == 410
    connect.heading("no longer valid")
    assert "new invite" in page.content()
    # And the second link works
    response = connect.open(second)
    assert response.status == 200


def test_a_server_in_another_domain_is_named_and_used_only_once_allowed(
    page: Any, open_invite: OpenInvite, connect: ConnectPage, dashboard: Dashboard
) -> None:
    # Given a domain whose autodiscover redirect names a hosting provider's server in another domain
    scenario = S["cross_domain_redirect"]
    open_invite("Vera", scenario.email)
    connect.sign_in(scenario.password)
    # Then the page names the host and asks before the password goes there
    connect.heading(f"Allow {scenario.confirm_host}")
    # And the IT admin's details are there, readable and downloadable, without the password
    details = connect.it_details()
    assert "candidate" in details
    assert str(scenario.confirm_host) in details
    assert scenario.password not in details
    with page.expect_download() as download:
        page.click("#it-details a[download]")
    report = download.value.path().read_text()
    assert "Mailbox connection report" in report
    assert scenario.password not in report
    # When the owner allows it
    page.click("#allow-server button[type=submit]")
    # Then the mailbox connects through that server
    connect.heading("Your mailbox is connected")
    assert dashboard.status_of(scenario.email) == CONNECTED


def test_a_failure_shows_the_it_details_and_the_api_returns_the_trace(
    local_stack: RunningStack, open_invite: OpenInvite, connect: ConnectPage
) -> None:
    # Given a mailbox whose server's certificate is for another name
    scenario = S["wrong_certificate"]
    open_invite("Walt", scenario.email)
    # When the owner signs in
    connect.sign_in(scenario.password)
    connect.heading("We could not connect your mailbox")
    # Then the failure page offers the details for IT, naming the TLS problem
    assert "tls" in connect.it_details()
    # And the dashboard API returns the same trace
    token = local_stack.token("demo")
    headers = {"Authorization": f"Bearer {token}"}
    listed = requests.get(f"{local_stack.base_url}/agents?limit=100", headers=headers, timeout=10).json()
    agent_id = next(a["agentId"] for a in listed["items"] if a["email"] == scenario.email)
    body = requests.get(f"{local_stack.base_url}/agents/{agent_id}/trace", headers=headers, timeout=10).json()
    assert body["agentId"] == agent_id
    assert body["trace"]["verdict"] == "tls_error"
    assert any(step["kind"] == "tls" for step in body["trace"]["steps"])
    assert scenario.password not in str(body)


def test_a_server_that_refuses_the_address_and_names_its_domain_gets_one_button_and_no_lock_count(
    page: Any, open_invite: OpenInvite, connect: ConnectPage, dashboard: Dashboard
) -> None:
    # Given maya, whose server takes only MTCORP\\maya as the login and names its Windows domain MTCORP
    scenario = S["netbios_domain_login"]
    open_invite("Maya", scenario.email)
    # When she signs in with her address and her right password
    connect.sign_in(scenario.password)
    connect.heading("We could not connect your mailbox")
    # Then the page says either could be the cause, and the try did not count towards the link's lock
    message = page.locator("[role=alert]").inner_text()
    assert "Either the password is wrong, or the server wants its Windows sign-in, MTCORP\\maya" in message
    assert "Check it and try again" not in message
    assert page.locator("#tries-left").inner_text() == "10 tries left before this link locks."
    # When she presses the one button it offers
    assert page.locator("#suggested-login button").count() == 1
    page.get_by_role("button", name="Sign in as MTCORP\\maya").click()
    # Then the advanced settings are open with MTCORP\\maya as the username, and the password has the focus
    assert page.locator("details", has=page.locator("input[name=username]")).evaluate("d => d.open")
    assert page.locator("input[name=username]").input_value() == "MTCORP\\maya"
    assert page.evaluate("document.activeElement.id") == "password"
    # And with her password again, the mailbox connects
    page.keyboard.type(scenario.password)
    page.get_by_role("button", name="Connect mailbox").click()
    connect.heading("Your mailbox is connected")
    assert dashboard.status_of(scenario.email) == CONNECTED


def test_the_provider_choice_is_one_switch_that_a_keyboard_reaches(
    page: Any, open_invite: OpenInvite, connect: ConnectPage
) -> None:
    # Given an Exchange mailbox's invite
    open_invite("Kim", "kim@fineart.test")
    # Then the page offers one choice, of what exists, with Exchange (routed) selected
    choice = page.get_by_role("navigation", name="Where is your mailbox?")
    assert choice.get_by_role("link").count() == 2
    assert choice.locator(".provider-name").all_inner_texts() == [
        "Microsoft 365 (work or school account)",
        "Microsoft Exchange (on-premises)",
    ]
    assert page.locator("#provider-exchange").get_attribute("aria-current") == "page"
    assert page.locator("#provider-m365").get_attribute("aria-current") is None
    assert page.locator("input[name=provider]").count() == 0
    assert "not available yet" not in page.content()
    # And a keyboard reaches it with a visible focus ring
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "provider-m365"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", "")
    # When the owner chooses Microsoft 365, that choice is the selected one
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Sign in with Microsoft").wait_for()
    assert page.locator("#provider-m365").get_attribute("aria-current") == "page"
