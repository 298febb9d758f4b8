"""`make smoke` against the local stack, as CI runs it: the same script an operator runs after a deploy.

moto holds the template's alarms (the local stack creates them from template.yaml, under the names the
stack's AlarmNames output lists) but never evaluates them: they stay in moto's initial state. So locally the
smoke test proves that every alarm of the template exists under the output's names and that the API checks
pass; whether the alarms are OK on AWS is what the deployed run checks."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3

from tests.conftest import ROOT, RunningStack


def _smoke(local_stack: RunningStack, token: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "SMOKE_TOKEN": token,
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable,
        "-m",
        "tools.smoke",
        "--outputs-url",
        f"{local_stack.base_url}/_local/outputs.json",
        "--endpoint-url",
        local_stack.moto_url,
        "--region",
        "us-east-1",
        "--allow-insufficient-data",
    ]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_smoke_test_passes_against_the_local_stack(local_stack: RunningStack) -> None:
    token = local_stack.token("smoke-tenant")
    done = _smoke(local_stack, token)
    assert done.returncode == 0, done.stderr
    assert "ok  agent added, read and removed" in done.stdout
    assert "ok  connect page answers a bad link with 404" in done.stdout
    assert "ok  41 alarms exist, none in ALARM" in done.stdout
    assert token not in done.stdout + done.stderr


def test_the_smoke_test_fails_when_an_alarm_fires(local_stack: RunningStack) -> None:
    cloudwatch = boto3.client(
        "cloudwatch",
        endpoint_url=local_stack.moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = "local-KmsErrorsAlarm"
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="smoke test of the smoke test")
    try:
        done = _smoke(local_stack, local_stack.token("smoke-tenant"))
    finally:
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="restored")
    assert done.returncode == 1
    assert f"alarms in ALARM: {name}" in done.stderr
