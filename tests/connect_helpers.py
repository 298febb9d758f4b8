"""Helpers of the connect page tests: the auth_callback function's environment under moto, an invited
agent with a real link (issued by the invite sender, read from the email), and form posts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from devstack import template as tpl
from functions.auth_callback import app
from functions.send_invite import app as send_invite_app
from onboarding import deps
from onboarding.agents import manage as agents
from onboarding.agents.models import NewAgent
from onboarding.agents.store import DynamoAgentRepository
from onboarding.invites.store import DynamoInviteRepository
from tests.conftest import TABLE_NAME, LambdaContext, api_event
from tests.invite_helpers import BASE_URL, SENDER, StreamReader, emails, token_of, verify_sender

DASHBOARD_URL = "https://dashboard.example.com/agents"
EMAIL = "ann@contoso.com"
PASSWORD = "S3cret-Pa55word!"
CSRF_KEY = b"k" * 48  # the value of the CSRF key secret
NONCE = re.compile(r'<input type="hidden" name="nonce" value="([^"]+)">')


@dataclass
class ConnectEnv:
    repo: DynamoAgentRepository
    invites: DynamoInviteRepository
    sfn: Any
    state_machine_arn: str
    stream: StreamReader

    def invite(
        self, name: str = "Ann Lee", tenant_name: str | None = "Contoso Ltd", email: str = EMAIL
    ) -> Invited:
        """An agent in status `invited` with the token of the link in its email."""
        new = NewAgent(name=name, email=email, type="ms_exchange")
        agent = agents.add_agent(self.repo, "demo", new, tenant_name=tenant_name)
        self.deliver()
        return Invited(agent.agent_id, token_of(emails()[-1]))

    def deliver(self) -> None:
        """The invite sender handles what the stream carries (as the event source mapping would)."""
        result = send_invite_app.lambda_handler(self.stream.event(), LambdaContext())  # type: ignore[arg-type]
        assert result == {"batchItemFailures": []}

    def item(self, agent_id: str) -> dict[str, Any]:
        found = self.repo.get_item("demo", agent_id)
        assert found is not None
        return found

    def executions(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self.sfn.list_executions(stateMachineArn=self.state_machine_arn)[
            "executions"
        ]
        return listed


@dataclass(frozen=True)
class Invited:
    agent_id: str
    token: str


def scan() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
    return sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))


@contextmanager
def connect_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectEnv]:
    """Inside moto (with the table): what template.yaml gives AuthCallbackFunction, and SES for invites.

    The state machine is the real ASL file; moto does not execute it here (handler tests only look at
    what was started)."""
    secret = boto3.client("secretsmanager").create_secret(Name="csrf-key", SecretString=CSRF_KEY.decode())
    refs = {"VerifyMailboxFunction.Arn": tpl.function_arn("test-VerifyMailboxFunction")}
    sfn = boto3.client("stepfunctions")
    machine_arn = tpl.create_state_machine(sfn, "VerifyMailboxStateMachine", refs, name="verify-mailbox")
    for name, value in {
        "STATE_MACHINE_ARN": f"{machine_arn}:live",  # the alias, as template.yaml gives it
        "PUBLIC_BASE_URL": BASE_URL,
        "DASHBOARD_URL": DASHBOARD_URL,
        "CSRF_KEY_SECRET_ARN": secret["ARN"],
        "SETTINGS_TIMEOUT_SECONDS": "600",
        "INVITE_SENDER": parseaddr(SENDER)[1],
        "INVITE_SENDER_NAME": parseaddr(SENDER)[0],
        "SES_CONFIGURATION_SET": "invites",
    }.items():
        monkeypatch.setenv(name, value)
    verify_sender()
    boto3.client("sesv2").create_configuration_set(ConfigurationSetName="invites")
    deps.reset()
    try:
        yield ConnectEnv(
            deps.agent_repository(TABLE_NAME),
            deps.invite_repository(TABLE_NAME),
            sfn,
            machine_arn,
            StreamReader(),
        )
    finally:
        deps.reset()


# -- requests ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


ROUTES = (
    (re.compile(r"^/connect/(?P<token>[^/]*)$"), "/connect/{token}"),
    (re.compile(r"^/connect/(?P<token>[^/]*)/status$"), "/connect/{token}/status"),
    (re.compile(r"^/connect/(?P<token>[^/]*)/settings$"), "/connect/{token}/settings"),
    (re.compile(r"^/connect-static/(?P<name>[^/]*)$"), "/connect-static/{name}"),
)


def event_for(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """As API Gateway sends it: the route key of template.yaml and its path parameters."""
    for pattern, route in ROUTES:
        found = pattern.match(path)
        if found:
            return api_event(method, path, tenant=None, route=route, path_params=found.groupdict(), **kwargs)
    return api_event(method, path, tenant=None, **kwargs)


def call(event: dict[str, Any]) -> Answer:
    response = app.lambda_handler(event, LambdaContext())  # type: ignore[arg-type]
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return Answer(response["statusCode"], headers, response.get("body") or "")


def get(path: str, *, accept: str = "text/html,application/xhtml+xml", **headers: str) -> Answer:
    event = event_for("GET", path)
    event["headers"] = {**event.get("headers", {}), "accept": accept, **headers}
    return call(event)


def nonce_of(page: str) -> str:
    found = NONCE.search(page)
    assert found, page
    return found.group(1)


def post(path: str, form: dict[str, str], *, origin: str | None = BASE_URL, **headers: str) -> Answer:
    event = event_for("POST", path, raw_body=urlencode(form))
    event["headers"] = {
        **event.get("headers", {}),
        "accept": "text/html,application/xhtml+xml",
        "content-type": "application/x-www-form-urlencoded",
        **({"origin": origin} if origin is not None else {}),
        **headers,
    }
    return call(event)


def credentials(nonce: str, **fields: str) -> dict[str, str]:
    return {"nonce": nonce, "provider": "ms_exchange", "email": EMAIL, "password": PASSWORD, **fields}
