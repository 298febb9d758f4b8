"""Removing a Microsoft 365 agent from the dashboard deletes its refresh token (as it deletes a password)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from functions.add_agent import app
from onboarding.errors import CredentialNotFoundError
from tests.conftest import api_event
from tests.functions.test_add_agent import add, delete


@pytest.mark.usefixtures("moto_aws")
def test_removing_the_agent_deletes_its_refresh_token_and_password() -> None:
    # Given an agent connected with "Sign in with Microsoft" (and a password from an earlier attempt)
    _, agent, _ = add(email="mia@m365.test")
    store = app.deps().cleanup.credentials
    store.put("demo", agent["agentId"], SecretStr("0.AAAA-refresh-token"), purpose="refresh_token")
    store.put("demo", agent["agentId"], SecretStr("an old password"))
    # When the dashboard removes it
    assert delete(agent["agentId"])[0] == 204
    # Then nothing is kept for it, whatever the purpose
    for purpose in ("refresh_token", "password"):
        with pytest.raises(CredentialNotFoundError):
            store.get("demo", agent["agentId"], purpose=purpose)


@pytest.mark.usefixtures("moto_aws")
def test_the_api_never_returns_how_the_mailbox_is_verified_or_any_token() -> None:
    _, agent, _ = add(email="mia@m365.test")
    from tests.functions.test_add_agent import call

    _, listed, _ = call(api_event("GET", "/agents"))
    assert set(listed["items"][0]) == set(agent)
    assert not any("token" in key.lower() or "method" in key.lower() for key in agent)
