"""The local dev dashboard, as a person uses it in a browser."""

from __future__ import annotations

from typing import Any

import pytest

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
    row.wait_for(state="detached")


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
