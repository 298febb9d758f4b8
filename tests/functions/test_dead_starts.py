"""An attempt whose starter was killed between `connecting` and the workflow start (onboarding.agents.start_watch),
as the functions meet it: the connect page's status view and the dashboard API's read and resend settle it
once its start deadline has passed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.add_agent import app as api_app
from functions.auth_callback import app as connect_app
from onboarding.agents.models import INTERNAL_ERROR, AgentStatus, Attr
from tests.conftest import LambdaContext, api_event, stored_secrets
from tests.connect_helpers import ConnectEnv, Invited, connect_environment, credentials, get, nonce_of, post

PAST = "2020-01-01T00:00:00.000Z"


class _Killed(BaseException):
    """Lambda killing the function: nothing catches it, no `finally` runs on the way."""


class _KilledAtStart:
    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def start_execution(self, **_: Any) -> Any:
        raise _Killed


@pytest.fixture
def env(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectEnv]:
    with connect_environment(monkeypatch) as connect_env:
        yield connect_env


def _killed_after_connecting(env: ConnectEnv) -> Invited:
    """An owner's credentials posted; the connect function dies before starting the workflow; its start
    deadline has passed since."""
    invited = env.invite()
    nonce = nonce_of(get(f"/connect/{invited.token}").body)
    service = connect_app.deps().service
    real, service.sfn = service.sfn, _KilledAtStart(service.sfn)
    with pytest.raises(_Killed):
        post(f"/connect/{invited.token}", credentials(nonce))
    service.sfn = real
    assert env.item(invited.agent_id)["status"] == "connecting"
    assert len(stored_secrets(invited.agent_id)) == 1
    env.repo.update_attributes(
        "demo", invited.agent_id, {Attr.START_DEADLINE: PAST}, expected_status=AgentStatus.CONNECTING
    )
    return invited


def _api(method: str, path: str, route: str, agent_id: str) -> tuple[int, Any]:
    event = api_event(method, path, tenant="demo", route=route, path_params={"agentId": agent_id})
    response = api_app.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]
    return response["statusCode"], json.loads(response["body"])


def test_the_status_page_ends_a_dead_start_failed_and_offers_the_form_again(env: ConnectEnv) -> None:
    invited = _killed_after_connecting(env)
    answer = get(f"/connect/{invited.token}/status", accept="application/json")
    assert (answer.status, answer.json()["status"], answer.json()["reason"]) == (
        200,
        "failed",
        INTERNAL_ERROR,
    )
    assert stored_secrets(invited.agent_id) == []
    # the same link takes the credentials again: a second attempt, its workflow started
    page = get(f"/connect/{invited.token}")
    assert page.status == 200
    assert post(f"/connect/{invited.token}", credentials(nonce_of(page.body))).status == 303
    assert [e["name"] for e in env.executions()] == [f"{invited.agent_id}-2"]
    assert env.item(invited.agent_id)["status"] == "connecting"
    assert Attr.START_DEADLINE not in env.item(invited.agent_id)


def test_the_dashboards_read_ends_a_dead_start_failed(env: ConnectEnv) -> None:
    invited = _killed_after_connecting(env)
    path = f"/agents/{invited.agent_id}"
    status, body = _api("GET", path, "/agents/{agentId}", invited.agent_id)
    assert (status, body["status"], body["statusReason"]) == (200, "failed", INTERNAL_ERROR)
    assert stored_secrets(invited.agent_id) == []


def _list(query: dict[str, str] | None = None) -> dict[str, Any]:
    event = api_event("GET", "/agents", tenant="demo", route="/agents", query=query)
    response = api_app.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]
    assert response["statusCode"] == 200
    body: dict[str, Any] = json.loads(response["body"])
    return body


def test_the_dashboards_list_ends_a_dead_start_failed(env: ConnectEnv) -> None:
    # Given a dead start, connecting since before its deadline
    invited = _killed_after_connecting(env)
    env.repo.update_attributes(
        "demo", invited.agent_id, {"updatedAt": PAST}, expected_status=AgentStatus.CONNECTING
    )
    # When the dashboard lists only what is connecting, Then it is not among them
    assert [a["agentId"] for a in _list({"status": "connecting"})["items"]] == []
    # And the full list shows it failed, its secret gone
    (agent,) = _list()["items"]
    assert (agent["agentId"], agent["status"], agent["statusReason"]) == (
        invited.agent_id,
        "failed",
        INTERNAL_ERROR,
    )
    assert stored_secrets(invited.agent_id) == []


def test_the_list_leaves_an_agent_connecting_for_less_than_any_deadline_alone(env: ConnectEnv) -> None:
    # Given a dead start whose deadline has passed, but that became `connecting` just now
    invited = _killed_after_connecting(env)
    # When the dashboard lists it, Then it is shown as it is (the page's own fields only; a read of the
    # agent itself settles it)
    (agent,) = _list()["items"]
    assert (agent["agentId"], agent["status"]) == (invited.agent_id, "connecting")
    assert len(stored_secrets(invited.agent_id)) == 1


def test_a_resend_of_a_dead_start_is_accepted(env: ConnectEnv) -> None:
    invited = _killed_after_connecting(env)
    path = f"/agents/{invited.agent_id}/invite"
    status, body = _api("POST", path, "/agents/{agentId}/invite", invited.agent_id)
    assert (status, body["status"]) == (202, "invite_pending")
    assert stored_secrets(invited.agent_id) == []


def test_a_workflow_started_before_the_kill_keeps_running_when_the_dashboard_reads_it(
    env: ConnectEnv,
) -> None:
    # Given the function started the workflow and died before removing the deadline
    invited = env.invite()
    nonce = nonce_of(get(f"/connect/{invited.token}").body)
    assert post(f"/connect/{invited.token}", credentials(nonce)).status == 303
    env.repo.update_attributes(
        "demo", invited.agent_id, {Attr.START_DEADLINE: PAST}, expected_status=AgentStatus.CONNECTING
    )
    # When the dashboard reads it, Then it is still connecting with its password; the deadline is gone
    status, body = _api("GET", f"/agents/{invited.agent_id}", "/agents/{agentId}", invited.agent_id)
    assert (status, body["status"]) == (200, "connecting")
    assert Attr.START_DEADLINE not in env.item(invited.agent_id)
    assert len(stored_secrets(invited.agent_id)) == 1
