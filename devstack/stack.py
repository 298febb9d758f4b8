"""The local stack: moto in server mode as AWS, resources created from template.yaml, and the gateway.

Everything listens on 127.0.0.1 only. `LocalStack` is used by `python -m devstack` and by the tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from devstack import template as tpl
from devstack import tokens
from devstack.exchange_sim.simulator import ExchangeSimulator
from devstack.gateway import Gateway
from devstack.lambdas import handlers_installed
from devstack.mailbox import sent_emails, summary
from devstack.runtime import FunctionRunner, runners_from_template
from devstack.streams import StreamPoller, stream_mappings

REGION = "us-east-1"
DEMO_TENANT = "demo"
DASHBOARD = Path(__file__).parent / "dashboard"
LOCAL_SENDER = "invites@example.com"


def _static(path: Path, content_type: str) -> Callable[[Request], Response]:
    def view(_: Request) -> Response:
        return Response(path.read_bytes(), content_type=f"{content_type}; charset=utf-8")

    return view


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalStack:
    gateway_port: int = 3000
    moto_port: int = 5001
    stage: str = "local"
    physical_names: dict[str, str] = field(default_factory=dict)
    _servers: list[Any] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    gateway: Gateway | None = None
    runners: dict[str, FunctionRunner] = field(default_factory=dict)
    _lambdas: Any = None
    _gateway_server: BaseWSGIServer | None = None
    secret_arns: dict[str, str] = field(default_factory=dict)  # and the KMS keys' ids and ARNs
    with_exchange: bool = True
    exchange: ExchangeSimulator | None = None
    # Local values for variables the template gives a function (only those: nothing AWS would not give).
    local_overrides: dict[str, str] = field(default_factory=dict)
    pollers: list[StreamPoller] = field(default_factory=list)
    queue_urls: dict[str, str] = field(default_factory=dict)
    _emails_printed: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def start(self) -> LocalStack:
        # werkzeug logs every request of moto and the gateway alike; keep the console for what matters.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._start_exchange_simulator()
        self._start_moto()
        self._point_aws_at_moto()
        self._bind_gateway()  # first, so the public base URL (its port) is known to the handlers
        self._create_resources()
        self.runners = runners_from_template(prefix=self.stage, environments=self.function_environments())
        for runner in self.runners.values():
            runner.load()  # cold starts now: a function missing a variable fails here, naming it
        from onboarding import aws

        aws.reset_clients()
        self._lambdas = handlers_installed(self.runners)
        self._lambdas.__enter__()
        self._serve_gateway()
        self._start_stream_pollers()
        return self

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()
        self.pollers.clear()
        if self.exchange is not None:
            self.exchange.stop()
            self.exchange = None
        for server in reversed(self._servers):
            with contextlib.suppress(Exception):
                server.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()
        if self._lambdas is not None:
            self._lambdas.__exit__(None, None, None)
            self._lambdas = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- pieces ------------------------------------------------------------------------------
    def _start_exchange_simulator(self) -> None:
        """Customers' Exchange servers, simulated on 127.0.0.1 (routing installed in this process)."""
        if not self.with_exchange:
            return
        self.exchange = ExchangeSimulator().start()
        self.local_overrides.update(
            {
                # Local only: the simulator lives on loopback, which the SSRF guard refuses elsewhere.
                "EXCHANGE_ALLOW_NETWORKS": "127.0.0.0/8",
                "EXCHANGE_CA_BUNDLE": self.exchange.ca_bundle,
            }
        )

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        server.start()
        self._servers.append(server)
        # Lambda without Docker (our handlers run through devstack.lambdas), Step Functions that really
        # execute the ASL.
        config = {"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}}
        requests.post(f"{self.moto_url}/moto-api/config", json=config, timeout=10).raise_for_status()

    def refs(self) -> dict[str, str]:
        template = tpl.load_template()
        refs = {
            **tpl.parameter_defaults(template),
            "Stage": self.stage,
            "PublicBaseUrl": self.base_url,
            "DashboardUrl": f"{self.base_url}/",
            "InviteSender": LOCAL_SENDER,
            "HttpApi": "local",
            **self.secret_arns,
        }
        refs.update({"AWS::Region": REGION, "AWS::AccountId": "123456789012", "AWS::StackName": "local"})
        for logical_id in tpl.resources(template, "AWS::DynamoDB::Table"):
            self.physical_names.setdefault(logical_id, f"{self.stage}-{logical_id}")
        refs.update(self.physical_names)
        for logical_id in tpl.resources(template, "AWS::Serverless::Function"):
            refs[logical_id] = f"{self.stage}-{logical_id}"
            refs[f"{logical_id}.Arn"] = tpl.function_arn(refs[logical_id])
        for logical_id in tpl.resources(template, "AWS::Serverless::StateMachine"):
            refs[logical_id] = tpl.state_machine_arn(f"{self.stage}-{logical_id}")
        for logical_id, body in tpl.resources(template, "AWS::SES::ConfigurationSet").items():
            refs[logical_id] = str(tpl.resolve(body["Properties"]["Name"], refs))
        return refs

    def function_environments(self) -> dict[str, dict[str, str]]:
        """Each function's environment exactly as the template gives it on AWS (with local values for
        the variables named in `local_overrides`, where the function has them)."""
        refs = self.refs()
        template = tpl.load_template()
        environments = {}
        for logical_id in tpl.resources(template, "AWS::Serverless::Function"):
            own = tpl.function_environment(logical_id, refs, template)
            environments[logical_id] = {
                name: self.local_overrides.get(name, value) for name, value in own.items()
            }
        return environments

    def _point_aws_at_moto(self) -> None:
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.moto_url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "MOTO_PORT": str(self.moto_port),
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_DISABLED": "true",
            }
        )

    def _create_resources(self) -> None:
        self.refs()  # fixes the physical names
        ddb = boto3.client("dynamodb", endpoint_url=self.moto_url, region_name=REGION)
        tpl.create_tables(ddb, self.physical_names)
        secrets_client = boto3.client("secretsmanager", endpoint_url=self.moto_url, region_name=REGION)
        for logical_id in tpl.resources(tpl.load_template(), "AWS::SecretsManager::Secret"):
            created = secrets_client.create_secret(
                Name=f"{self.stage}/{logical_id}", SecretString=secrets.token_urlsafe(48)
            )
            self.secret_arns[logical_id] = created["ARN"]
        kms = boto3.client("kms", endpoint_url=self.moto_url, region_name=REGION)
        for logical_id, body in tpl.resources(tpl.load_template(), "AWS::KMS::Key").items():
            key = kms.create_key(Description=str(body["Properties"].get("Description", logical_id)))
            self.secret_arns[logical_id] = key["KeyMetadata"]["KeyId"]
            self.secret_arns[f"{logical_id}.Arn"] = key["KeyMetadata"]["Arn"]
        self._create_email_resources()
        sfn = boto3.client("stepfunctions", endpoint_url=self.moto_url, region_name=REGION)
        refs = self.refs()
        for logical_id in tpl.resources(tpl.load_template(), "AWS::Serverless::StateMachine"):
            sfn.create_state_machine(
                name=f"{self.stage}-{logical_id}",
                definition=tpl.state_machine_definition(logical_id, refs),
                roleArn="arn:aws:iam::123456789012:role/local-state-machine",
                type="STANDARD",
            )

    def _create_email_resources(self) -> None:
        """SES needs the sender verified; the configuration sets and queues exist as on AWS."""

        refs = self.refs()
        template = tpl.load_template()
        ses = boto3.client("sesv2", endpoint_url=self.moto_url, region_name=REGION)
        ses.create_email_identity(EmailIdentity=LOCAL_SENDER)
        for logical_id in tpl.resources(template, "AWS::SES::ConfigurationSet"):
            ses.create_configuration_set(ConfigurationSetName=refs[logical_id])
        sqs = boto3.client("sqs", endpoint_url=self.moto_url, region_name=REGION)
        for logical_id in tpl.resources(template, "AWS::SQS::Queue"):
            self.queue_urls[logical_id] = sqs.create_queue(QueueName=f"{self.stage}-{logical_id}")["QueueUrl"]

    def _start_stream_pollers(self) -> None:
        """Stream records reach their functions as the template's event source mappings say."""
        clients = {
            name: boto3.client(name, endpoint_url=self.moto_url, region_name=REGION)
            for name in ("dynamodb", "dynamodbstreams", "sqs")
        }
        for mapping in stream_mappings():
            poller = StreamPoller(
                mapping=mapping,
                runner=self.runners[mapping.function],
                ddb=clients["dynamodb"],
                streams=clients["dynamodbstreams"],
                table_name=self.physical_names[mapping.table],
                sqs=clients["sqs"],
                queue_url=self.queue_urls.get(mapping.on_failure_queue or ""),
                after_batch=self._print_new_emails,
            )
            self.pollers.append(poller.start())

    def _print_new_emails(self) -> None:
        emails = sent_emails()
        for sent in emails[self._emails_printed :]:
            print(summary(sent), flush=True)
        self._emails_printed = len(emails)

    def _emails(self, _: Request) -> Response:
        """Every email sent so far (newest last): what a local user reads instead of an inbox."""
        return Response(
            json.dumps(sent_emails()), content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    def _bind_gateway(self) -> None:
        # werkzeug logs every request of moto and the gateway alike; keep the console for what matters.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.gateway = Gateway(self.runners)
        self.gateway.add_local_route("GET", "/_local/health", self._health)
        self.gateway.add_local_route("GET", "/_local/emails", self._emails)
        self.gateway.add_local_route("GET", "/", self._dashboard)
        for name, content_type in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            self.gateway.add_local_route("GET", f"/_local/{name}", _static(DASHBOARD / name, content_type))
        self._gateway_server = make_server("127.0.0.1", self.gateway_port, self.gateway, threaded=True)
        self.gateway_port = self._gateway_server.server_port

    def _serve_gateway(self) -> None:
        assert self.gateway is not None
        assert self._gateway_server is not None
        self.gateway.runners.update(self.runners)
        thread = threading.Thread(target=self._gateway_server.serve_forever, name="gateway", daemon=True)
        thread.start()
        self._servers.append(self._gateway_server)
        self._threads.append(thread)

    def _dashboard(self, _: Request) -> Response:
        """The dev dashboard, signed in as tenant `demo` (a local token embedded in the page)."""
        html = (DASHBOARD / "index.html").read_text(encoding="utf-8")
        html = html.replace("{{TOKEN}}", tokens.mint(DEMO_TENANT)).replace("{{TENANT}}", DEMO_TENANT)
        return Response(html, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    def _health(self, _: Request) -> Response:
        return Response(json.dumps({"status": "ok", "moto": self.moto_url}), content_type="application/json")
