"""Onboarding end to end, as the people involved do it: the admin in the dashboard, the mailbox owner in
the email and on the connect page, against the local stack and its simulated Exchange servers."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from devstack.exchange_sim.scenarios import SCENARIOS_BY_NAME as S
from tests.conftest import RunningStack

pytestmark = pytest.mark.browser


def add_agent_in_dashboard(page: Any, stack: RunningStack, name: str, email: str) -> None:
    page.goto(stack.base_url + "/")
    page.fill("input[name=name]", name)
    page.fill("input[name=email]", email)
    page.click("button[type=submit]")
    page.locator("tr", has_text=email).wait_for()


def invite_links(stack: RunningStack, email: str) -> list[str]:
    emails = requests.get(f"{stack.base_url}/_local/emails", timeout=10).json()
    return [e["link"] for e in emails if e["to"] == email]


def wait_for_invite(stack: RunningStack, email: str, count: int = 1) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        links = invite_links(stack, email)
        if len(links) >= count:
            return links[-1]
        time.sleep(0.2)
    raise AssertionError(f"no invite email to {email}")


def sign_in(page: Any, link: str, password: str, *, username: str = "", server: str = "") -> None:
    page.goto(link)
    assert page.locator("input[name=provider][value=ms_exchange]").is_checked()
    page.fill("input[name=password]", password)
    if username or server:
        page.click("summary")
        page.fill("form input[name=username]", username)
        page.fill("form input[name=server]", server)
    page.click("button[type=submit]")


def wait_for_heading(page: Any, text: str, timeout: float = 60_000) -> None:
    page.locator("h1", has_text=text).wait_for(timeout=timeout)


def tick_shown(page: Any, stack: RunningStack, email: str) -> bool:
    page.goto(stack.base_url + "/")
    row = page.locator("tr", has_text=email)
    row.wait_for()
    page.wait_for_function(
        "email => [...document.querySelectorAll('tr')].some(r => r.textContent.includes(email) && r.dataset.status)",
        arg=email,
    )
    return str(row.locator("td.status").inner_text()).strip() == "Connected ✔"


def test_a_connected_owner_is_taken_back_to_the_dashboard(page: Any, local_stack: RunningStack) -> None:
    scenario = S["autodiscover_subdomain"]
    add_agent_in_dashboard(page, local_stack, "Bea <Support>", scenario.email)
    link = wait_for_invite(local_stack, scenario.email)
    sign_in(page, link, scenario.password)
    wait_for_heading(page, "Your mailbox is connected")
    # The page offers the way back at once (its HTML, as served, without racing the automatic return) ...
    served = requests.get(f"{link}/status", timeout=10).text
    dashboard = f"{local_stack.base_url}/"
    assert f'<meta http-equiv="refresh" content="5;url={dashboard}">' in served
    assert f'href="{dashboard}">Go to the dashboard now</a>' in served
    # ... and takes the owner there by itself.
    page.wait_for_url(dashboard, timeout=60_000)
    assert tick_shown(page, local_stack, scenario.email)
    # The link did its job: opening it again says so, kindly.
    page.goto(link)
    wait_for_heading(page, "already used")


def test_without_autodiscover_the_owner_enters_advanced_settings(
    page: Any, local_stack: RunningStack
) -> None:
    scenario = S["manual_domain_user"]
    add_agent_in_dashboard(page, local_stack, "Dave", scenario.email)
    sign_in(page, wait_for_invite(local_stack, scenario.email), scenario.password)
    wait_for_heading(page, "We need a few more details")
    assert "Outlook on the web" in page.content()
    page.fill("input[name=username]", str(scenario.username))
    page.fill("input[name=server]", str(scenario.server))
    page.click("button[type=submit]")
    wait_for_heading(page, "Your mailbox is connected")
    assert tick_shown(page, local_stack, scenario.email)


def test_a_wrong_password_is_explained_with_the_tries_left_and_the_right_one_works(
    page: Any, local_stack: RunningStack
) -> None:
    scenario = S["autodiscover_http_redirect"]
    add_agent_in_dashboard(page, local_stack, "Carl", scenario.email)
    link = wait_for_invite(local_stack, scenario.email)
    sign_in(page, link, "Not-My-Password-1")
    wait_for_heading(page, "We could not connect your mailbox")
    message = page.locator("[role=alert]").inner_text()
    assert f"did not accept the password for {scenario.email}" in message
    assert "username and password" not in message.lower()  # the owner typed no username: none is blamed
    # The address was refused as the login and the server named no Windows domain: the form is suggested
    assert "DOMAIN\\carl" in message
    assert page.locator("#tries-left").inner_text() == "9 tries left before this link locks."
    page.fill("input[name=password]", scenario.password)
    page.click("button[type=submit]")
    wait_for_heading(page, "Your mailbox is connected")
    assert tick_shown(page, local_stack, scenario.email)


def test_the_last_try_is_announced_and_the_tenth_wrong_password_locks_the_link(
    page: Any, local_stack: RunningStack
) -> None:
    scenario = S["autodiscover_srv"]
    add_agent_in_dashboard(page, local_stack, "Lou", scenario.email)
    link = wait_for_invite(local_stack, scenario.email)
    sign_in(page, link, "Wrong-1")
    for attempt in range(2, 10):
        wait_for_heading(page, "We could not connect your mailbox")
        page.fill("input[name=password]", f"Wrong-{attempt}")
        page.click("button[type=submit]")
    wait_for_heading(page, "We could not connect your mailbox")
    warning = page.locator("#tries-left").inner_text()
    assert warning.startswith("Last try: one more wrong password locks this link")
    page.fill("input[name=password]", "Wrong-10")
    page.click("button[type=submit]")
    wait_for_heading(page, "This link is locked")
    assert "send a new invite" in page.content()


def test_a_link_replaced_by_a_resend_shows_a_friendly_page(page: Any, local_stack: RunningStack) -> None:
    scenario = S["autodiscover_srv"]
    add_agent_in_dashboard(page, local_stack, "Dora", scenario.email)
    first = wait_for_invite(local_stack, scenario.email)
    page.locator("tr", has_text=scenario.email).get_by_role("button", name="Resend invite").click()
    second = wait_for_invite(local_stack, scenario.email, count=2)
    assert second != first
    response = page.goto(first)
    assert response.status == 410
    wait_for_heading(page, "no longer valid")
    assert "new invite" in page.content()
    response = page.goto(second)
    assert response.status == 200


def test_a_server_in_another_domain_is_named_and_used_only_once_allowed(
    page: Any, local_stack: RunningStack
) -> None:
    # Given a domain whose autodiscover redirect names a hosting provider's server in another domain
    scenario = S["cross_domain_redirect"]
    add_agent_in_dashboard(page, local_stack, "Vera", scenario.email)
    sign_in(page, wait_for_invite(local_stack, scenario.email), scenario.password)
    # Then the page names the host and asks before the password goes there
    wait_for_heading(page, f"Allow {scenario.confirm_host}")
    # And the IT admin's details are there, readable and downloadable, without the password
    page.click("#it-details summary")
    details = page.locator("#it-details pre").inner_text()
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
    wait_for_heading(page, "Your mailbox is connected")
    assert tick_shown(page, local_stack, scenario.email)


def test_a_failure_shows_the_it_details_and_the_api_returns_the_trace(
    page: Any, local_stack: RunningStack
) -> None:
    # Given a mailbox whose server's certificate is for another name
    scenario = S["wrong_certificate"]
    add_agent_in_dashboard(page, local_stack, "Walt", scenario.email)
    sign_in(page, wait_for_invite(local_stack, scenario.email), scenario.password)
    wait_for_heading(page, "We could not connect your mailbox")
    # Then the failure page offers the details for IT, naming the TLS problem
    page.click("#it-details summary")
    assert "tls" in page.locator("#it-details pre").inner_text()
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
