"""The verification workflow as deployed: the ASL file from template.yaml executed by moto, its Lambda tasks
run by the real verify_mailbox handler, talking to the Exchange simulator."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import SecretStr

from devstack import template as tpl
from devstack.exchange_sim.simulator import ExchangeSimulator
from devstack.lambdas import handlers_installed
from devstack.runtime import runners_from_template
from onboarding import deps
from onboarding.agents.models import AgentStatus, Attr
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core import aws
from onboarding.core.credentials import KmsCredentialStore
from onboarding.invites.mailer import Mailer
from onboarding.invites.models import Invite
from onboarding.invites.store import DynamoInviteRepository
from onboarding.invites.tokens import token_hash
from tests import lifecycle
from tests.conftest import CREDENTIALS_TABLE, TABLE_NAME, create_resources
from tests.invite_helpers import SENDER, verify_sender
from tests.m365_fixtures import identity_sim, identity_sim_server  # noqa: F401 - pytest fixtures

STAGE = "test"


@pytest.fixture(scope="session")
def exchange_sim() -> Iterator[ExchangeSimulator]:
    with ExchangeSimulator() as sim:
        yield sim


@dataclass
class Workflow:
    sfn: Any
    repo: DynamoAgentRepository
    credentials: KmsCredentialStore
    arn: str
    invites: DynamoInviteRepository
    mailer: Mailer
    invite_hashes: dict[str, str] = field(default_factory=dict)  # agent id -> its link's token hash

    def add_invited_agent(self, email: str, tenant: str = "demo") -> str:
        """An agent whose invite went out (its invite item stored, as the invite sender stores it)."""
        agent = lifecycle.add(self.repo, email=email, tenant=tenant, name="Owner")
        token = lifecycle.send_invite(self.repo, self.invites, self.mailer, agent)
        self.invite_hashes[agent.agent_id] = token_hash(token)
        return agent.agent_id

    def invite_of(self, agent_id: str) -> Invite | None:
        return self.invites.get(self.invite_hashes[agent_id])

    def connected_with_invite(self, agent_id: str) -> dict[str, Any]:
        """What the connect page keeps on the agent when its owner opens the link: the invite's hash."""
        return {Attr.INVITE_HASH: self.invite_hashes[agent_id]} if agent_id in self.invite_hashes else {}

    def connect(
        self,
        agent_id: str,
        password: str | None,
        *,
        username: str | None = None,
        server: str | None = None,
        settings_timeout: int = 600,
        tenant: str = "demo",
    ) -> str:
        """What the connect page does on POST: move to connecting, store the password, start the workflow."""
        item = self.repo.get_item(tenant, agent_id) or {}
        attempt = int(item.get(Attr.ATTEMPT, 0)) + 1
        extra = {k: v for k, v in {Attr.USERNAME: username, Attr.SERVER: server}.items() if v}
        self.repo.transition(
            tenant,
            agent_id,
            AgentStatus.CONNECTING,
            set_attributes={
                Attr.ATTEMPT: attempt,
                Attr.ROUNDS: 0,
                **extra,
                **self.connected_with_invite(agent_id),
            },
        )
        if password is not None:
            self.credentials.put(tenant, agent_id, SecretStr(password))
        execution = self.sfn.start_execution(
            stateMachineArn=self.arn,
            name=f"{agent_id}-{attempt}",
            input=json.dumps(
                {
                    "tenantId": tenant,
                    "agentId": agent_id,
                    "attempt": attempt,
                    "settingsTimeoutSeconds": settings_timeout,
                }
            ),
        )
        return str(execution["executionArn"])

    def send_settings(
        self, agent_id: str, *, server: str, username: str | None, tenant: str = "demo"
    ) -> None:
        """What the connect page does on POST settings: resume the waiting task with the token on the agent."""
        item = self.repo.get_item(tenant, agent_id) or {}
        values = {Attr.SERVER: server, **({Attr.USERNAME: username} if username else {})}
        self.repo.transition(
            tenant,
            agent_id,
            AgentStatus.CONNECTING,
            set_attributes=values,
            remove_attributes=(Attr.TASK_TOKEN,),
        )
        self.sfn.send_task_success(taskToken=item[Attr.TASK_TOKEN], output="{}")

    def wait_for_status(
        self, agent_id: str, statuses: set[AgentStatus], tenant: str = "demo", timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self.repo.get_item(tenant, agent_id) or {}
            if AgentStatus(item.get("status", "removed")) in statuses:
                return item
            time.sleep(0.05)
        raise AssertionError(f"agent stayed {item.get('status')}, expected one of {statuses}")

    def wait_for_end(self, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described: dict[str, Any] = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.05)
        raise AssertionError("the execution did not end")

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.sfn.get_execution_history(
            executionArn=execution_arn, maxResults=1000
        )["events"]
        return events


@pytest.fixture
def workflow(
    exchange_sim: ExchangeSimulator, monkeypatch: pytest.MonkeyPatch, moto_aws_sfn: None
) -> Iterator[Workflow]:
    monkeypatch.setenv("EXCHANGE_ALLOW_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("EXCHANGE_CA_BUNDLE", exchange_sim.ca_bundle)
    monkeypatch.setenv("EXCHANGE_DISCOVERY_TIMEOUT", "4")
    monkeypatch.setenv("EXCHANGE_VERIFY_TIMEOUT", "4")
    deps.reset()
    runners = runners_from_template(prefix=STAGE)
    refs = {name: f"{STAGE}-{name}" for name in runners} | {
        f"{name}.Arn": tpl.function_arn(f"{STAGE}-{name}") for name in runners
    }
    sfn = boto3.client("stepfunctions")
    arn = tpl.create_state_machine(sfn, "VerifyMailboxStateMachine", refs, name="verify-mailbox")
    verify_sender()
    with handlers_installed(runners):
        yield Workflow(
            sfn=sfn,
            repo=deps.agent_repository(TABLE_NAME),
            credentials=deps.credential_store(CREDENTIALS_TABLE, os.environ["CREDENTIALS_KEY_ARN"]),
            arn=arn,
            invites=deps.invite_repository(TABLE_NAME),
            mailer=Mailer(SENDER, aws.client("sesv2"), sleep=lambda _: None),
        )
    deps.reset()


@pytest.fixture
def moto_aws_sfn(aws_environment: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto with Step Functions executing state machines and Lambda without Docker."""
    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    # DynamoDB writes an item at once; moto applies an update's actions one by one, and the workflow's
    # tasks run on moto's threads while the test's thread reads the agent (it saw `needs_settings`
    # before the task token of the same update). One DynamoDB request at a time, as the local stack does
    # (devstack.stack.OneDynamoDBRequestAtATime).
    from moto.dynamodb.responses import DynamoHandler

    lock, call_action = threading.RLock(), DynamoHandler.call_action

    def one_at_a_time(handler: DynamoHandler) -> Any:
        with lock:
            return call_action(handler)

    monkeypatch.setattr(DynamoHandler, "call_action", one_at_a_time)
    with mock_aws(config=config):  # type: ignore[arg-type]
        deps.reset()
        create_resources(monkeypatch)
        yield
        deps.reset()
