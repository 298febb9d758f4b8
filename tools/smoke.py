"""Smoke test of a deployed stack (`make smoke STACK=...`), and of the local stack in CI.

Reads the stack's outputs (CloudFormation's, or the local stack's /_local/outputs.json), then checks what an
operator checks after a deploy: the OpenAPI document is served; an agent can be added, read and removed
with the operator's token; the connect page answers a bad link with its "link not found" page; every alarm
of the stack exists and none is in ALARM (OK is required unless --allow-insufficient-data: alarms created a
minute ago have not been evaluated yet).

The token (an ID token of the dashboard's identity provider, see README "Cognito") comes from the
SMOKE_TOKEN environment variable, never from the command line (it would show in `ps` and shell history),
and is never printed. The agent added uses SES's mailbox simulator address by default, so the invite email
it sends costs no reputation.

Needs boto3 and requests only (not the local stack).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import requests

SIMULATOR_ADDRESS = "success@simulator.amazonses.com"
TIMEOUT = 30


class SmokeFailure(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


@dataclass
class Smoke:
    outputs: dict[str, str]
    token: str
    cloudwatch: Any
    email: str = SIMULATOR_ADDRESS
    allow_insufficient_data: bool = False
    passed: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        return self.outputs["ApiUrl"].rstrip("/")

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def openapi_document(self) -> str:
        answer = requests.get(f"{self.api}/openapi.json", timeout=TIMEOUT)
        check(answer.status_code == 200, f"GET /openapi.json answered {answer.status_code}")
        document = answer.json()
        check(
            "openapi" in document and "/agents" in document.get("paths", {}), "not the agents API's document"
        )
        return f"OpenAPI {document['openapi']} document with {len(document['paths'])} paths"

    def agent_lifecycle(self) -> str:
        body = {"name": "Smoke test", "email": self.email, "type": "ms_exchange"}
        added = requests.post(f"{self.api}/agents", json=body, headers=self._auth(), timeout=TIMEOUT)
        check(added.status_code == 201, f"POST /agents answered {added.status_code}: {added.text[:200]}")
        agent_id = added.json()["agentId"]
        try:
            read = requests.get(f"{self.api}/agents/{agent_id}", headers=self._auth(), timeout=TIMEOUT)
            check(read.status_code == 200, f"GET /agents/{{id}} answered {read.status_code}")
            check(read.json()["email"] == self.email.lower(), "the agent read back is not the one added")
        finally:
            removed = requests.delete(f"{self.api}/agents/{agent_id}", headers=self._auth(), timeout=TIMEOUT)
        check(removed.status_code == 204, f"DELETE /agents/{{id}} answered {removed.status_code}")
        gone = requests.get(f"{self.api}/agents/{agent_id}", headers=self._auth(), timeout=TIMEOUT)
        check(gone.status_code == 404, f"a removed agent answered {gone.status_code}, not 404")
        return "agent added, read and removed"

    def connect_page_bad_link(self) -> str:
        page = requests.get(f"{self.api}/connect/{secrets.token_urlsafe(32)}", timeout=TIMEOUT)
        check(page.status_code == 404, f"a bad link answered {page.status_code}, not 404")
        check(
            page.headers.get("Content-Type", "").startswith("text/html"), "a bad link's answer is not a page"
        )
        return "connect page answers a bad link with 404"

    def alarms(self) -> str:
        names = [name for name in self.outputs["AlarmNames"].split(",") if name]
        check(bool(names), "the stack lists no alarms")
        found: dict[str, str] = {}
        for start in range(0, len(names), 100):
            batch = self.cloudwatch.describe_alarms(
                AlarmNames=names[start : start + 100], AlarmTypes=["MetricAlarm"]
            )
            found.update({alarm["AlarmName"]: alarm["StateValue"] for alarm in batch["MetricAlarms"]})
        missing = sorted(set(names) - set(found))
        check(not missing, f"alarms missing: {', '.join(missing)}")
        firing = sorted(name for name, state in found.items() if state == "ALARM")
        check(not firing, f"alarms in ALARM: {', '.join(firing)}")
        waiting = sorted(name for name, state in found.items() if state == "INSUFFICIENT_DATA")
        check(not waiting or self.allow_insufficient_data, f"alarms not evaluated yet: {', '.join(waiting)}")
        return f"{len(found)} alarms exist, none in ALARM ({len(waiting)} not evaluated yet)"

    def run(self) -> list[str]:
        steps: list[Callable[[], str]] = [
            self.openapi_document,
            self.agent_lifecycle,
            self.connect_page_bad_link,
            self.alarms,
        ]
        return [step() for step in steps]


def stack_outputs(stack_name: str, cloudformation: Any) -> dict[str, str]:
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.smoke", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack-name", help="the deployed stack (its CloudFormation outputs)")
    source.add_argument(
        "--outputs-url", help="a JSON object of outputs (the local stack's /_local/outputs.json)"
    )
    parser.add_argument("--region", default=None)
    parser.add_argument("--endpoint-url", default=None, help="AWS endpoint (the local stack's moto)")
    parser.add_argument("--email", default=SIMULATOR_ADDRESS, help="address of the agent added and removed")
    parser.add_argument("--allow-insufficient-data", action="store_true")
    args = parser.parse_args(argv)
    token = os.environ.get("SMOKE_TOKEN", "")
    if not token:
        print(
            "Set SMOKE_TOKEN to a dashboard token of a test tenant (README: Deploy > Smoke test).",
            file=sys.stderr,
        )
        return 2
    session = boto3.session.Session(region_name=args.region)
    if args.stack_name:
        outputs = stack_outputs(
            args.stack_name, session.client("cloudformation", endpoint_url=args.endpoint_url)
        )
    else:
        outputs = requests.get(args.outputs_url, timeout=TIMEOUT).json()
    smoke = Smoke(
        outputs=outputs,
        token=token,
        cloudwatch=session.client("cloudwatch", endpoint_url=args.endpoint_url),
        email=args.email,
        allow_insufficient_data=args.allow_insufficient_data,
    )
    try:
        for line in smoke.run():
            print(f"ok  {line}")
    except SmokeFailure as failure:
        print(f"FAILED  {failure}", file=sys.stderr)
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
