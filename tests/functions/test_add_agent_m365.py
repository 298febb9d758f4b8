"""Removing a Microsoft 365 agent from the dashboard deletes its refresh token (as it deletes a password)."""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr

from onboarding.core.credentials import KmsCredentialStore
from onboarding.core.errors import CredentialNotFoundError
from tests.conftest import CREDENTIALS_TABLE, api_event, stored_secrets
from tests.functions.test_add_agent import add, delete


@pytest.mark.usefixtures("moto_aws")
def test_removing_the_agent_deletes_its_refresh_token_and_password() -> None:
    # Given an agent connected with "Sign in with Microsoft" (and a password from an earlier attempt)
    _, agent, _ = add(email="mia@m365.test")
    sealing = KmsCredentialStore(CREDENTIALS_TABLE, os.environ["CREDENTIALS_KEY_ARN"])  # as the connect page
    sealing.put("demo", agent["agentId"], SecretStr("0.AAAA-refresh-token"), purpose="refresh_token")
    sealing.put("demo", agent["agentId"], SecretStr("an old password"))
    assert len(stored_secrets(agent["agentId"])) == 2
    # When the dashboard removes it
    assert delete(agent["agentId"])[0] == 204
    # Then nothing is kept for it, whatever the purpose
    assert stored_secrets(agent["agentId"]) == []
    for purpose in ("refresh_token", "password"):
        with pytest.raises(CredentialNotFoundError):
            sealing.get("demo", agent["agentId"], purpose=purpose)


@pytest.mark.usefixtures("moto_aws")
def test_the_api_never_returns_how_the_mailbox_is_verified_or_any_token() -> None:
    _, agent, _ = add(email="mia@m365.test")
    from tests.functions.test_add_agent import call

    _, listed, _ = call(api_event("GET", "/agents"))
    assert set(listed["items"][0]) == set(agent)
    assert not any("token" in key.lower() or "method" in key.lower() for key in agent)
