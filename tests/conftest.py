"""Shared fixtures: moto with the table built from template.yaml, and API Gateway events."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
import pytest
import requests
from moto import mock_aws

from devstack import template as tpl
from devstack.events import api_event, load_event  # noqa: F401  (re-exported for the tests)
from onboarding import deps
from onboarding.store import DynamoAgentRepository

ROOT = Path(__file__).resolve().parent.parent
TABLE_NAME = "test-agents"


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
        "AGENTS_TABLE_NAME": TABLE_NAME,
        "CREDENTIALS_PREFIX": "mailbox-onboarding/test",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:verify-mailbox",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def moto_aws(aws_environment: None) -> Iterator[None]:
    """moto in-process, with every DynamoDB table of template.yaml created from the template itself."""
    with mock_aws():
        deps.reset()
        tpl.create_tables(boto3.client("dynamodb"), {"AgentsTable": TABLE_NAME})
        yield
        deps.reset()


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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
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
