"""Shared fixtures: moto with the table built from template.yaml, and API Gateway events."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Powertools reads these when Logger/Metrics are created (at first import of the handlers), as on
# Lambda, where the template's Globals set them before any code runs.
os.environ.update(
    {
        "POWERTOOLS_SERVICE_NAME": "mailbox-onboarding",
        "POWERTOOLS_METRICS_NAMESPACE": "MailboxOnboarding-test",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
)

import boto3
import hypothesis
import pytest
import requests
from moto import mock_aws

from devstack import template as tpl
from devstack.events import api_event, load_event  # noqa: F401  (re-exported for the tests)
from onboarding import deps
from onboarding.agents.store import DynamoAgentRepository

# Property tests: in CI (.ci/run sets CI) the same examples every run, so a verdict changes only with the
# code; elsewhere a new random draw each run, so developers keep finding new cases. Found cases are pinned
# with @example.
hypothesis.settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")

# Records every AWS call each function makes (the IAM contract, tests/contract/).
pytest_plugins = ["tests.contract.recorder"]

ROOT = Path(__file__).resolve().parent.parent
TABLE_NAME = "test-agents"
CREDENTIALS_TABLE = "test-credentials"
STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:verify-mailbox"
# What the template's references resolve to in the tests (a deployment named `test`). The KMS key and the
# CSRF secret are created per test under moto; these stand in until then.
TEST_REFS = {
    **tpl.parameter_defaults(),
    "Stage": "test",
    "InviteSender": "invites@example.com",
    "PublicBaseUrl": "",
    "HttpApi": "test",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AgentsTable": TABLE_NAME,
    "CredentialsTable": CREDENTIALS_TABLE,
    "VerifyMailboxStateMachine": STATE_MACHINE_ARN,
    "VerifyMailboxStateMachineAliaslive": f"{STATE_MACHINE_ARN}:live",
    "CsrfKeySecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:csrf-key-AbCdEf",
    # The Entra app's client secret as the Microsoft 365 tests store it (Secrets Manager adds 6 characters).
    "EntraClientSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:entra-app-AbCdEf",
    "CredentialsKey.Arn": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
    "InviteConfigurationSet": "invites",
    "AgentEventsBus": "test-agents",  # the bus's name (its Ref)
    "ChecksQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/checks",
    "ChecksQueue.Arn": "arn:aws:sqs:us-east-1:123456789012:checks",
}


def template_environment(logical_id: str | None = None) -> dict[str, str]:
    """The environment template.yaml gives a function (all of them, merged, when none is named)."""
    names = (
        [logical_id] if logical_id else list(tpl.resources(tpl.load_template(), "AWS::Serverless::Function"))
    )
    merged: dict[str, str] = {}
    for name in names:
        merged.update(tpl.function_environment(name, TEST_REFS))
    return merged


# The handler modules validate their settings when imported (cold start): give them the template's values
# before any test module imports them. Each test gets them again (and restored) from `aws_environment`.
for _name, _value in template_environment().items():
    if not _name.startswith("POWERTOOLS_"):
        os.environ.setdefault(_name, _value)


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region for every test, so nothing can ever reach real AWS."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        **{k: v for k, v in template_environment().items() if not k.startswith("POWERTOOLS_")},
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def create_resources(monkeypatch: pytest.MonkeyPatch) -> str:
    """Inside moto: every DynamoDB table of template.yaml (from the template itself) and the credentials
    KMS key, whose ARN the functions get as CREDENTIALS_KEY_ARN."""
    tpl.create_tables(
        boto3.client("dynamodb"), {"AgentsTable": TABLE_NAME, "CredentialsTable": CREDENTIALS_TABLE}
    )
    key_arn: str = boto3.client("kms").create_key(Description="credentials")["KeyMetadata"]["Arn"]
    monkeypatch.setenv("CREDENTIALS_KEY_ARN", key_arn)
    return key_arn


@pytest.fixture
def moto_aws(aws_environment: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process, with the template's tables and the credentials key."""
    with mock_aws():
        deps.reset()
        create_resources(monkeypatch)
        yield
        deps.reset()


@pytest.fixture
def key_arn(moto_aws: None) -> str:
    return os.environ["CREDENTIALS_KEY_ARN"]


@pytest.fixture
def repo(moto_aws: None) -> DynamoAgentRepository:
    return deps.agent_repository(TABLE_NAME)


class LambdaContext:
    function_name = "test-function"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id = "11111111-2222-3333-4444-555555555555"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


@dataclass
class RunningStack:
    base_url: str
    moto_url: str
    process: subprocess.Popen[str]

    def token(self, tenant: str) -> str:
        from devstack import tokens

        return tokens.mint(tenant)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The local stack as a user runs it (`python -m devstack run`), in its own process, on free ports."""
    from devstack.stack import free_port

    port, moto_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("devstack") / "devstack.log"
    declared = set(template_environment())  # the tests' values: the stack gives each function its own
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_")) and k not in declared
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devstack",
                "run",
                "--fresh",
                "--port",
                str(port),
                "--moto-port",
                str(moto_port),
            ],
            cwd=ROOT,
            env={**env, "PYTHONPATH": f"{ROOT / 'layers' / 'common'}{os.pathsep}{ROOT}"},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    stack = RunningStack(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{moto_port}", process)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{stack.base_url}/_local/health", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the local stack did not start:\n{log.read_text()}")
        time.sleep(0.1)
    yield stack
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def stored_secrets(agent_id: str | None = None) -> list[dict[str, Any]]:
    """The sealed items in the credentials table (of one agent when named)."""
    items: list[dict[str, Any]] = boto3.client("dynamodb").scan(TableName=CREDENTIALS_TABLE)["Items"]
    return [item for item in items if agent_id is None or f"#{agent_id}#" in item["sk"]["S"]]


def stored_password(agent_id: str, tenant: str = "demo") -> str:
    """What the verification function would read: the agent's password, unsealed."""
    from onboarding.core.credentials import KmsCredentialStore

    store = KmsCredentialStore(CREDENTIALS_TABLE, os.environ["CREDENTIALS_KEY_ARN"])
    return store.get(tenant, agent_id).get_secret_value()
