"""The local dev dashboard, as a person uses it in a browser."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import RunningStack

pytestmark = pytest.mark.browser


def test_adding_and_removing_an_agent_from_the_dashboard(page: Any, local_stack: RunningStack) -> None:
    page.goto(local_stack.base_url + "/")
    page.fill("input[name=name]", "Dana <b>Dashboard</b>")
    page.fill("input[name=email]", "dana.dashboard@contoso.test")
    page.click("button[type=submit]")
    row = page.locator("tr", has_text="dana.dashboard@contoso.test")
    row.wait_for()
    assert "Dana <b>Dashboard</b>" in row.inner_text()  # shown as text, never as markup
    row.get_by_role("button", name="Remove").click()
    # Nothing is removed before the admin confirms, however often the list refreshes meanwhile.
    question = row.locator(".confirm")
    assert "Remove Dana <b>Dashboard</b>?" in question.inner_text()
    with page.expect_response(lambda response: "/agents?limit=" in response.url):
        pass  # the list refreshed (every 2 s) while the question was open
    assert row.locator(".confirm").is_visible()
    row.get_by_role("button", name="Yes, remove").click()
    row.wait_for(state="detached")


def test_cancelling_a_removal_keeps_the_agent(page: Any, local_stack: RunningStack) -> None:
    page.goto(local_stack.base_url + "/")
    page.fill("input[name=name]", "Cole")
    page.fill("input[name=email]", "cole.cancel@contoso.test")
    page.click("button[type=submit]")
    row = page.locator("tr", has_text="cole.cancel@contoso.test")
    row.get_by_role("button", name="Remove").click()
    row.get_by_role("button", name="Cancel").click()
    assert row.get_by_role("button", name="Remove").is_visible()
    token = local_stack.token("demo")
    listed = requests.get(
        f"{local_stack.base_url}/agents", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["items"]
    assert "cole.cancel@contoso.test" in [agent["email"] for agent in listed]


def test_statuses_read_as_words(page: Any, local_stack: RunningStack) -> None:
    page.goto(local_stack.base_url + "/")
    page.fill("input[name=name]", "Ivy")
    page.fill("input[name=email]", "ivy.invited@contoso.test")
    page.click("button[type=submit]")
    row = page.locator("tr[data-status=invited]", has_text="ivy.invited@contoso.test")
    row.wait_for()
    assert row.locator("td.status").inner_text() == "Invite sent"


def test_at_phone_width_nothing_scrolls_sideways(browser: Any, local_stack: RunningStack) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    try:
        page = context.new_page()
        page.goto(local_stack.base_url + "/")
        page.fill("input[name=name]", "Maximilian Alexander Longname-Fitzgerald")
        page.fill("input[name=email]", "maximilian.alexander.longname-fitzgerald@subsidiary.contoso.test")
        page.click("button[type=submit]")
        row = page.locator("tr", has_text="maximilian.alexander")
        row.wait_for()
        row.get_by_role("button", name="Remove").click()  # the widest state of a row
        row.locator(".confirm").wait_for()
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        box = row.get_by_role("button", name="Yes, remove").bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390
    finally:
        context.close()


def test_the_dashboard_shows_what_is_wrong_with_bad_input(page: Any, local_stack: RunningStack) -> None:
    page.goto(local_stack.base_url + "/")
    page.fill("input[name=name]", "Eve")
    page.fill("input[name=email]", "eve@contoso.test")
    page.click("button[type=submit]")
    page.locator("tr", has_text="eve@contoso.test").wait_for()
    page.fill("input[name=name]", "Eve again")
    page.fill("input[name=email]", "EVE@contoso.test")
    page.click("button[type=submit]")
    page.wait_for_function("document.querySelector('#add-error').textContent.length > 0")
    assert "already exists" in page.locator("#add-error").inner_text()
