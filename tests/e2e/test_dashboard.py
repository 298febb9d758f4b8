"""The local dev dashboard, as a person uses it in a browser."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import RunningStack
from tests.e2e.pages import Dashboard, SentMail

pytestmark = pytest.mark.browser


def test_adding_and_removing_an_agent_from_the_dashboard(page: Any, dashboard: Dashboard) -> None:
    # Given an agent whose name looks like markup
    row = dashboard.open().add_agent("Dana <b>Dashboard</b>", "dana.dashboard@contoso.test")
    assert "Dana <b>Dashboard</b>" in row.inner_text()  # shown as text, never as markup
    # When the admin presses Remove
    row.get_by_role("button", name="Remove").click()
    # Then nothing is removed before the admin confirms, however often the list refreshes meanwhile
    question = row.locator(".confirm")
    assert question.inner_text() == (
        "Remove Dana <b>Dashboard</b> (dana.dashboard@contoso.test)? Its invite link stops working."
    )
    with page.expect_response(lambda response: "/agents?limit=" in response.url):
        pass  # the list refreshed (every 2 s) while the question was open
    assert row.locator(".confirm").is_visible()
    # And once confirmed, the agent goes
    row.get_by_role("button", name="Yes, remove").click()
    row.wait_for(state="detached")


def test_cancelling_a_removal_keeps_the_agent(local_stack: RunningStack, dashboard: Dashboard) -> None:
    # Given an agent the admin starts to remove
    row = dashboard.open().add_agent("Cole", "cole.cancel@contoso.test")
    row.get_by_role("button", name="Remove").click()
    # When the admin cancels
    row.get_by_role("button", name="Cancel").click()
    # Then the row is back as it was, and the API still lists the agent
    assert row.get_by_role("button", name="Remove").is_visible()
    token = local_stack.token("demo")
    listed = requests.get(
        f"{local_stack.base_url}/agents", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["items"]
    assert "cole.cancel@contoso.test" in [agent["email"] for agent in listed]


def test_statuses_read_as_words(page: Any, dashboard: Dashboard) -> None:
    # When an agent is added and its invite sent
    dashboard.open().add_agent("Ivy", "ivy.invited@contoso.test")
    # Then its status reads as words
    row = page.locator("tr[data-status=invited]", has_text="ivy.invited@contoso.test")
    row.wait_for()
    assert row.locator("td.status").inner_text() == "Invite sent"


def test_at_phone_width_nothing_scrolls_sideways(browser: Any, local_stack: RunningStack) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    try:
        # Given the dashboard on a phone, with an agent whose name and address are long
        page = context.new_page()
        row = (
            Dashboard(page, local_stack)
            .open()
            .add_agent(
                "Maximilian Alexander Longname-Fitzgerald",
                "maximilian.alexander.longname-fitzgerald@subsidiary.contoso.test",
            )
        )
        # When its row is at its widest (the removal question)
        row.get_by_role("button", name="Remove").click()
        row.locator(".confirm").wait_for()
        # Then nothing scrolls sideways and the buttons are on screen
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        # (measured in one script run: the dashboard's refresh may redraw the row between two calls)
        box = page.evaluate(
            """() => {
                const b = [...document.querySelectorAll("button")].find(b => b.textContent === "Yes, remove");
                if (!b) return null;
                const r = b.getBoundingClientRect();
                return {x: r.x, width: r.width};
            }"""
        )
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390
    finally:
        context.close()


def test_the_dashboard_shows_what_is_wrong_with_bad_input(page: Any, dashboard: Dashboard) -> None:
    # Given an agent
    dashboard.open().add_agent("Eve", "eve@contoso.test")
    # When the admin adds the same address again, in other letter case
    dashboard.submit_agent("Eve again", "EVE@contoso.test")
    # Then the form says what is wrong
    page.wait_for_function("document.querySelector('#add-error').textContent.length > 0")
    assert "already exists" in page.locator("#add-error").inner_text()


def test_the_add_form_shows_examples_as_hints_not_as_values(page: Any, dashboard: Dashboard) -> None:
    dashboard.open()
    # Then no field holds an example that looks typed in: each example is a hint under its field
    assert page.locator("#add-agent input[placeholder]").count() == 0
    for field, example in (("name", "e.g. Bea Baker"), ("email", "e.g. bea@fabrikam.test")):
        field_input = page.locator(f"#add-agent input[name={field}]")
        assert field_input.input_value() == ""
        hint = page.locator("#" + str(field_input.get_attribute("aria-describedby")))
        assert hint.inner_text() == example
        # muted: another colour than what is typed, and smaller
        styles = page.evaluate(
            """([hint, input]) => [getComputedStyle(hint).color, getComputedStyle(input).color,
                                  parseFloat(getComputedStyle(hint).fontSize),
                                  parseFloat(getComputedStyle(input).fontSize)]""",
            [hint.element_handle(), field_input.element_handle()],
        )
        assert styles[0] != styles[1]
        assert styles[2] < styles[3]


def test_the_inviter_named_in_the_dashboard_is_named_in_the_email_and_on_the_page(
    page: Any, dashboard: Dashboard, sent_mail: SentMail
) -> None:
    # Given the admin adds an agent and says who invites
    dashboard.open()
    page.fill("input[name=inviterName]", "Contoso <Support> & Co")
    dashboard.add_agent("Ines", "ines.inviter@contoso.test")
    # Then the invite email names them, as text
    link = sent_mail.invite_to("ines.inviter@contoso.test")
    (email,) = [e for e in sent_mail.emails() if e["to"] == "ines.inviter@contoso.test"]
    assert email["subject"] == "Contoso <Support> & Co invites you to connect your mailbox"
    # And so does the connect page, as text (not markup), never the tenant id
    page.goto(link)
    lead = page.locator("p.lead").inner_text()
    assert lead.startswith("Contoso <Support> & Co invited you to connect ines.inviter@contoso.test")
    assert "demo" not in lead


def test_addresses_wrap_between_their_parts_not_mid_word(browser: Any, local_stack: RunningStack) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    try:
        # Given a long address on a phone, in the list and in the removal question
        page = context.new_page()
        address = "wrap.maximilian.alexander.longname-fitzgerald@subsidiary.contoso.test"
        row = Dashboard(page, local_stack).open().add_agent("Max Wrap", address)
        row.get_by_role("button", name="Remove").click()
        row.locator(".confirm").wait_for()
        # Then each line of the address ends at a wrap point: after "@", or before a dot
        # (found and measured in one evaluation: the dashboard re-renders its rows every 2 s, and a handle taken
        # before a re-render measures a detached element)
        for selector in ("td.email", ".confirm"):
            breaks = page.evaluate(LINE_BREAKS, [selector, address])
            assert breaks, f"{selector}: the address fits on one line; the test needs it to wrap"
            for before, after in breaks:
                assert before.endswith("@") or after.startswith("."), (selector, before, after)
    finally:
        context.close()


# Where the browser broke the lines inside `address` in an element's text: [text before, text after] per break.
LINE_BREAKS = """([selector, address]) => {
    const row = [...document.querySelectorAll("tr")].find(r => r.textContent.includes(address));
    const el = row && row.querySelector(selector);
    if (!el) return null;
    const chars = [];
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const node = walker.currentNode;
        for (let i = 0; i < node.length; i++) {
            const range = document.createRange();
            range.setStart(node, i); range.setEnd(node, i + 1);
            const rect = range.getClientRects()[0];
            chars.push({c: node.data[i], top: rect ? Math.round(rect.top) : null});
        }
    }
    const text = chars.map(x => x.c).join("");
    const start = text.indexOf(address);
    if (start < 0) return null;
    const breaks = [];
    for (let i = start + 1; i < start + address.length; i++) {
        if (chars[i].top !== null && chars[i - 1].top !== null && chars[i].top > chars[i - 1].top) {
            breaks.push([text.slice(start, i), text.slice(i, start + address.length)]);
        }
    }
    return breaks;
}"""


def _agents_repo(local_stack: RunningStack) -> Any:
    """The local stack's agents table, for putting an agent where a health check would (the checks come with
    the `health` branch)."""
    import boto3

    from onboarding.agents.store import DynamoAgentRepository

    ddb = boto3.client(
        "dynamodb",
        endpoint_url=local_stack.moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    (table,) = [name for name in ddb.list_tables()["TableNames"] if "AgentsTable" in name]
    return DynamoAgentRepository(table, ddb)


def test_an_agent_that_needs_reconnecting_shows_why_and_gets_a_reconnect_email(
    page: Any, local_stack: RunningStack, dashboard: Dashboard
) -> None:
    from onboarding.agents.models import AgentStatus, Attr

    # Given a connected agent whose server then refused its stored password (as a check leaves it)
    email = "rita.reconnect@contoso.test"
    dashboard.open().add_agent("Rita", email)
    page.locator("tr[data-status=invited]", has_text=email).wait_for()
    repo = _agents_repo(local_stack)
    token = local_stack.token("demo")
    listed = requests.get(
        f"{local_stack.base_url}/agents", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["items"]
    agent_id = next(a["agentId"] for a in listed if a["email"] == email)
    for status in (AgentStatus.CONNECTING, AgentStatus.VERIFIED):
        repo.transition("demo", agent_id, status)
    problem = {
        Attr.CHECK_PROBLEM: "auth_failed",
        Attr.CHECK_STATE: "failed",
        Attr.PROBLEM_SINCE: "2026-03-03T08:00:00Z",
    }
    repo.transition(
        "demo", agent_id, AgentStatus.NEEDS_RECONNECT, reason="auth_failed", set_attributes=problem
    )
    # When the admin filters on the agents needing reconnect
    page.select_option("#status-filter", "needs_reconnect")
    row = page.locator("tr[data-status=needs_reconnect]", has_text=email)
    row.wait_for()
    # Then the row says why, in words
    assert row.locator("td.status").inner_text() == "Needs reconnect: wrong password"
    assert "The server no longer accepts the password." in row.locator("td.health").inner_text()
    # And "Send reconnect email" sends one: the row says so, the sent-mail page has it
    row.get_by_role("button", name="Send reconnect email").click()
    page.wait_for_function(
        "email => [...document.querySelectorAll('tr')].some(r => r.textContent.includes(email)"
        " && r.textContent.includes('reconnect email sent'))",
        arg=email,
    )
    sent = requests.get(f"{local_stack.base_url}/_local/emails.json?to={email}", timeout=10).json()
    assert sent[0]["subject"] == f"Your mailbox {email} stopped connecting: please reconnect it"
    # A second one at once is refused with the API's words
    row.get_by_role("button", name="Send reconnect email").click()
    page.wait_for_function("() => document.getElementById('add-error').textContent.includes('recently')")
