"""The local stack: moto in server mode as AWS, resources created from template.yaml, and the gateway.

Everything listens on 127.0.0.1 only. `LocalStack` is used by `python -m devstack` and by the tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from devstack import template as tpl
from devstack.gateway import Gateway

REGION = "us-east-1"


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

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def start(self) -> LocalStack:
        self._start_moto()
        self._configure_environment()
        self._create_resources()
        self._start_gateway()
        return self

    def stop(self) -> None:
        for server in reversed(self._servers):
            with contextlib.suppress(Exception):
                server.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- pieces ------------------------------------------------------------------------------
    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        server.start()
        self._servers.append(server)

    def refs(self) -> dict[str, str]:
        template = tpl.load_template()
        refs = {**tpl.parameter_defaults(template), "Stage": self.stage, "TenantClaim": "custom:tenant_id"}
        refs.update({"AWS::Region": REGION, "AWS::AccountId": "123456789012", "AWS::StackName": "local"})
        for logical_id in tpl.resources(template, "AWS::DynamoDB::Table"):
            self.physical_names.setdefault(logical_id, f"{self.stage}-{logical_id}")
        refs.update(self.physical_names)
        return refs

    def _configure_environment(self) -> None:
        """Point every AWS client in this process at moto and give handlers their template env."""
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
        refs = self.refs()
        template = tpl.load_template()
        # All handlers share this process, so they share one environment: the union of theirs.
        for logical_id in tpl.resources(template, "AWS::Serverless::Function"):
            os.environ.update(tpl.function_environment(logical_id, refs, template))
        from onboarding import aws

        aws.reset_clients()

    def _create_resources(self) -> None:
        ddb = boto3.client("dynamodb", endpoint_url=self.moto_url, region_name=REGION)
        tpl.create_tables(ddb, self.physical_names)

    def _start_gateway(self) -> None:
        # werkzeug logs every request of moto and the gateway alike; keep the console for what matters.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.gateway = Gateway()
        self.gateway.add_local_route("GET", "/_local/health", self._health)
        server: BaseWSGIServer = make_server("127.0.0.1", self.gateway_port, self.gateway, threaded=True)
        self.gateway_port = server.server_port
        thread = threading.Thread(target=server.serve_forever, name="gateway", daemon=True)
        thread.start()
        self._servers.append(server)
        self._threads.append(thread)

    def _health(self, _: Request) -> Response:
        return Response(json.dumps({"status": "ok", "moto": self.moto_url}), content_type="application/json")
