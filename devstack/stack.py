"""The local stack: moto in server mode as AWS, resources created from template.yaml, and the gateway.

Everything listens on 127.0.0.1 only. `LocalStack` is used by `python -m devstack` and by the tests.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from devstack import bus, controls, mailbox, queues, schedules, tokens
from devstack import state as saved
from devstack import template as tpl
from devstack.eventbridge import EventRouter, execution_ends_published
from devstack.exchange_sim.simulator import ExchangeSimulator
from devstack.gateway import Gateway
from devstack.iam import build, enforce
from devstack.iam.enforce import as_harness
from devstack.identity_sim import IdentitySimulator
from devstack.lambdas import handlers_installed
from devstack.runtime import FunctionRunner, runners_from_template
from devstack.streams import StreamPoller, stream_mappings

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
DEMO_TENANT = "demo"
DASHBOARD = Path(__file__).parent / "dashboard"
LOCAL_SENDER = "invites@example.com"
# Where "Sign in with Microsoft" returns to (registered with the identity simulator as the app's redirect URI).
M365_REDIRECT_PATH = "/connect/oauth/callback"
# Where the gateway serves the identity simulator's sign-in pages (people's browsers go there).
SIGN_IN_PATH = "/_local/login"


def _static(path: Path, content_type: str) -> Callable[[Request], Response]:
    def view(_: Request) -> Response:
        return Response(path.read_bytes(), content_type=f"{content_type}; charset=utf-8")

    return view


class PortInUseError(Exception):
    def __init__(self, port: int, what: str) -> None:
        super().__init__(f"port {port} ({what}) is in use")
        self.port = port
        self.what = what


def _bind(port: int, app: Any, what: str, **options: Any) -> BaseWSGIServer:
    """A threaded server bound now, in the caller's thread: a taken port fails here, at once.

    The socket is bound here and handed over, because werkzeug answers a taken port with sys.exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not for a listening port: TIME_WAIT only
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUseError(port, what) from None
        raise
    with sock:  # the server keeps its own duplicate of the socket
        return make_server("127.0.0.1", port, app, threaded=True, fd=sock.fileno(), **options)


class OneDynamoDBRequestAtATime:
    """WSGI middleware: moto serves DynamoDB (and Streams) requests one at a time.

    moto's DynamoDB backend is not thread-safe: `transact_write_items` deep-copies the table (to roll
    back a cancelled transaction) while other request threads write to it, which fails with
    "dictionary changed size during iteration". DynamoDB itself takes concurrent requests, and the local
    stack has many concurrent callers (gateway threads, stream pollers, workflow tasks), so the moto
    server in front of the backend takes DynamoDB requests in turn. Other services stay concurrent.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(("DynamoDB_", "DynamoDBStreams_")):
            result: Iterable[bytes] = self.app(environ, start_response)
            return result
        with self.lock:
            return list(self.app(environ, start_response))  # the whole body, inside the lock


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
    _eventbridge: Any = None
    events: EventRouter | None = None  # EventBridge: Step Functions' status-change events to their rules
    _gateway_server: BaseWSGIServer | None = None
    secret_arns: dict[str, str] = field(default_factory=dict)  # and the KMS keys' ids and ARNs
    parameters: dict[str, str] = field(default_factory=dict)  # template parameters set by the stack
    with_exchange: bool = True
    exchange: ExchangeSimulator | None = None
    with_identity: bool = True
    identity: IdentitySimulator | None = None
    # Local values for variables the template gives a function (only those: nothing AWS would not give).
    local_overrides: dict[str, str] = field(default_factory=dict)
    pollers: list[StreamPoller] = field(default_factory=list)
    # SQS event sources (devstack/queues.py) and scheduled rules (devstack/schedules.py)
    queue_sources: list[queues.SqsEventSource] = field(default_factory=list)
    scheduler: schedules.Scheduler | None = None
    # Local only (`make dev CHECK_INTERVAL=2m`): minutes between two health checks of a mailbox (the
    # CheckIntervalMinutes parameter, below its AWS floor) and the schedules' period (a quarter of it).
    check_interval_minutes: int | None = None
    queue_urls: dict[str, str] = field(default_factory=dict)
    _emails_printed: int = 0
    # Where state is kept across restarts (None: start empty, keep nothing; see devstack/state.py).
    state_dir: Path | None = None
    restored: saved.Snapshot = field(default_factory=saved.Snapshot)
    _state: saved.StateDir | None = None
    _saver: saved.Saver | None = None
    _moto_server: BaseWSGIServer | None = None
    _emails: list[dict[str, Any]] = field(default_factory=list)  # this run's, in order
    _emails_lock: threading.Lock = field(default_factory=threading.Lock)
    _secret_values: dict[str, str] = field(default_factory=dict)
    _key_material: dict[str, dict[str, str]] = field(default_factory=dict)  # KMS keys, as state keeps them
    bus_logs: dict[str, str] = field(default_factory=dict)  # the buses' tap log groups (devstack/bus.py)
    ready: bool = False  # every part started: /_local/health answers 200 from then on
    _enforcer: enforce.Enforcer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def run_number(self) -> int:
        return self.restored.runs + 1

    def start(self) -> LocalStack:
        """Raises PortInUseError or StateInUseError before starting anything."""
        # werkzeug logs every request of moto and the gateway alike; keep the console for what matters.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._bind_gateway()  # first, so the public base URL (its port) is known to the handlers
        try:
            self._bind_moto()
            self._lock_state()
        except BaseException:
            self.stop()
            raise
        try:
            self._start_exchange_simulator()
            self._start_identity_simulator()
            self._start_moto()
            self._point_aws_at_moto()
            if self.check_interval_minutes is not None:
                self.parameters["CheckIntervalMinutes"] = str(self.check_interval_minutes)
            self._create_resources()
            self._restore()
            self._register_m365_app()
            controls.mount(self.gateway, self.exchange, self.identity)  # /_local/simulators
            self._point_m365_at_identity_simulator()
            self._enforce_iam()
            self.runners = runners_from_template(prefix=self.stage, environments=self.function_environments())
            for runner in self.runners.values():
                runner.load()  # cold starts now: a function missing a variable fails here, naming it
            from onboarding.core import aws

            aws.reset_clients()
            self._lambdas = handlers_installed(self.runners)
            self._lambdas.__enter__()
            self.events = EventRouter(self.runners, self.refs(), tpl.load_template())
            self._eventbridge = execution_ends_published(self.events, region=REGION, account=ACCOUNT)
            self._eventbridge.__enter__()
            with as_harness():  # the stack restarting what a restart interrupted: no function's doing
                self._resume_checks()
            self._start_scheduler()  # mounted before the gateway serves; its first run is a period away
            self._serve_gateway()
            self._start_stream_pollers()
            self._start_queue_pollers()
            if self._state is not None:
                self._saver = saved.Saver(self._state, self.snapshot).start()
            self.ready = True
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        for source in self.queue_sources:
            source.stop()
        self.queue_sources.clear()
        for poller in self.pollers:
            poller.stop()
        self.pollers.clear()
        if self._saver is not None:
            self._saver.stop()
            self._saver.save_reported()  # the last word, before moto goes away
            self._saver = None
        if self.exchange is not None:
            self.exchange.stop()
            self.exchange = None
        if self.identity is not None:
            self.identity.stop()
            self.identity = None
        for server in reversed(self._servers):  # the serving ones
            with contextlib.suppress(Exception):
                server.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        for bound in (self._gateway_server, self._moto_server):  # every bound socket, served or not
            if bound is not None:
                bound.server_close()
        self._gateway_server = self._moto_server = None
        self._servers.clear()
        self._threads.clear()
        if self._eventbridge is not None:
            self._eventbridge.__exit__(None, None, None)
            self._eventbridge = None
        if self._lambdas is not None:
            self._lambdas.__exit__(None, None, None)
            self._lambdas = None
        if self._state is not None:
            self._state.release()
            self._state = None
        if self._enforcer is not None and enforce.installed() is self._enforcer:
            enforce.uninstall()
        self._enforcer = None

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

    def _start_identity_simulator(self) -> None:
        """Microsoft's identity platform and Graph, simulated on 127.0.0.1 (devstack/identity_sim/)."""
        if self.with_identity:
            self.identity = IdentitySimulator().start()

    def _register_m365_app(self) -> None:
        """The Entra app the template names (EntraClientId, EntraClientSecretArn) is registered with the
        simulator; left empty, the simulator's own app is used and its secret stored in (moto's) Secrets
        Manager, as an operator would store the real one."""
        if self.identity is None:
            return
        params = tpl.parameter_defaults(tpl.load_template())
        client_id = str(params.get("EntraClientId") or self.identity.client_id)
        secret = self.identity.client_secret
        sm = boto3.client("secretsmanager", endpoint_url=self.moto_url, region_name=REGION)
        if secret_arn := str(params.get("EntraClientSecretArn") or ""):
            secret = sm.get_secret_value(SecretId=secret_arn)["SecretString"]
        else:
            created = sm.create_secret(Name=f"{self.stage}/EntraClientSecret", SecretString=secret)
            self.secret_arns["EntraClientSecretArn"] = created["ARN"]
        self.parameters["EntraClientId"] = client_id
        self.identity.register_app(
            client_id=client_id, client_secret=secret, redirect_uris=[self.base_url + M365_REDIRECT_PATH]
        )
        # The sign-in pages on the gateway's own origin (plain HTTP on loopback, a fixed port): any browser
        # signs in without a certificate warning, and the address stays the same across restarts.
        assert self.gateway is not None
        self.gateway.mount(SIGN_IN_PATH, self.identity.browser_app(self.base_url + SIGN_IN_PATH))

    def _point_m365_at_identity_simulator(self) -> None:
        """Where Microsoft is: settings the template leaves to their production defaults."""
        if self.identity is not None:
            env = self.identity.environment()
            self.local_overrides.update(
                {k: env[k] for k in ("M365_AUTHORITY_HOST", "GRAPH_BASE_URL", "M365_CA_BUNDLE")}
            )
            self.local_overrides["M365_SIGN_IN_HOST"] = self.base_url + SIGN_IN_PATH

    def _enforce_iam(self) -> None:
        """Every AWS call a function or the state machine makes from now on is held to its own policy in
        template.yaml, with this stack's resource names (devstack/iam/). A refused call fails as on AWS
        (AccessDeniedException) and is printed here."""
        refs = self.refs()
        enforcer = build.enforcer(lambda: refs, stack_name=self.stage)
        enforcer.listeners.append(_print_denial)
        enforcer.policies()  # every policy resolves now, or the stack does not start
        self._enforcer = enforce.install(enforcer)

    def _bind_moto(self) -> None:
        """moto's own server app (what `moto_server` runs), with DynamoDB requests taken in turn.

        Not ThreadedMotoServer: it binds in its thread and, when the port is taken, waits forever."""
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        app = OneDynamoDBRequestAtATime(DomainDispatcherApplication(create_backend_app))
        self._moto_server = _bind(self.moto_port, app, "moto", request_handler=MotoRequestHandler)
        self.moto_port = self._moto_server.server_address[1]

    def _lock_state(self) -> None:
        if self.state_dir is None:
            return
        state = saved.StateDir(self.state_dir)
        state.acquire()  # StateInUseError: another local stack keeps its state there
        self._state = state
        self.restored = state.load()

    def _start_moto(self) -> None:
        assert self._moto_server is not None
        thread = threading.Thread(target=self._moto_server.serve_forever, name="moto", daemon=True)
        thread.start()
        self._servers.append(self._moto_server)
        self._threads.append(thread)
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
            **self.parameters,
        }
        refs.update({"AWS::Region": REGION, "AWS::AccountId": "123456789012", "AWS::StackName": self.stage})
        for logical_id in tpl.resources(template, "AWS::DynamoDB::Table"):
            self.physical_names.setdefault(logical_id, f"{self.stage}-{logical_id}")
        refs.update(self.physical_names)
        for logical_id in tpl.resources(template, "AWS::Serverless::Function"):
            refs[logical_id] = f"{self.stage}-{logical_id}"
            refs[f"{logical_id}.Arn"] = tpl.function_arn(refs[logical_id])
        for logical_id in tpl.resources(template, "AWS::Serverless::StateMachine"):
            arn = tpl.state_machine_arn(f"{self.stage}-{logical_id}")
            refs.update(tpl.state_machine_refs(logical_id, arn, template))
        for logical_id, body in tpl.resources(template, "AWS::SES::ConfigurationSet").items():
            refs[logical_id] = str(tpl.resolve(body["Properties"]["Name"], refs))
        for logical_id in tpl.resources(template, "AWS::SQS::Queue"):
            refs[f"{logical_id}.QueueName"] = f"{self.stage}-{logical_id}"
            refs[f"{logical_id}.Arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.stage}-{logical_id}"
            if logical_id in self.queue_urls:
                refs[logical_id] = self.queue_urls[logical_id]
        for logical_id in tpl.resources(template, "AWS::SNS::Topic"):
            refs[logical_id] = f"arn:aws:sns:{REGION}:{ACCOUNT}:{self.stage}-{logical_id}"
        for logical_id, body in tpl.resources(template, "AWS::Events::EventBus").items():
            refs[logical_id] = str(tpl.resolve(body["Properties"]["Name"], refs))
            refs[f"{logical_id}.Arn"] = tpl.event_bus_arn(refs[logical_id], REGION, ACCOUNT)
        for logical_id, body in tpl.resources(template, "AWS::CloudWatch::Alarm").items():
            refs[logical_id] = str(tpl.resolve(body["Properties"]["AlarmName"], refs))
        for logical_id, body in tpl.resources(template, "AWS::CloudWatch::Dashboard").items():
            refs[logical_id] = str(tpl.resolve(body["Properties"]["DashboardName"], refs))
        return refs

    def outputs(self) -> dict[str, str]:
        """The stack's outputs as `sam deploy` shows them (what the smoke test reads); the API's URL is the
        local gateway's."""
        refs = self.refs()
        found = {
            name: str(tpl.resolve(body["Value"], refs))
            for name, body in tpl.load_template().get("Outputs", {}).items()
            if name != "ApiUrl"
        }
        return {**found, "ApiUrl": self.base_url}

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
            value = self.restored.secrets.get(logical_id) or secrets.token_urlsafe(48)
            created = secrets_client.create_secret(Name=f"{self.stage}/{logical_id}", SecretString=value)
            self.secret_arns[logical_id] = created["ARN"]
            self._secret_values[logical_id] = value
        kms = boto3.client("kms", endpoint_url=self.moto_url, region_name=REGION)
        for logical_id, body in tpl.resources(tpl.load_template(), "AWS::KMS::Key").items():
            key = kms.create_key(Description=str(body["Properties"].get("Description", logical_id)))
            key_id, arn = self._keep_key(logical_id, key["KeyMetadata"]["KeyId"])
            self.secret_arns[logical_id] = key_id
            self.secret_arns[f"{logical_id}.Arn"] = arn
        self._create_email_resources()
        self._create_alarms()
        self.bus_logs = bus.create_buses(
            boto3.client("events", endpoint_url=self.moto_url, region_name=REGION),
            boto3.client("logs", endpoint_url=self.moto_url, region_name=REGION),
            self.refs(),
            self.stage,
        )
        sfn = boto3.client("stepfunctions", endpoint_url=self.moto_url, region_name=REGION)
        refs = self.refs()
        for logical_id in tpl.resources(tpl.load_template(), "AWS::Serverless::StateMachine"):
            tpl.create_state_machine(
                sfn,
                logical_id,
                refs,
                name=f"{self.stage}-{logical_id}",
                role_arn="arn:aws:iam::123456789012:role/local-state-machine",
            )

    def _keep_key(self, logical_id: str, created_id: str) -> tuple[str, str]:
        """The key just created, made the one a previous run saved (same id, same material), so that what
        was sealed then is unsealed now; its id and ARN. moto has no ImportKeyMaterial: the key is set in
        its backend (this process serves moto)."""
        from moto.kms.models import kms_backends

        backend = kms_backends[ACCOUNT][REGION]
        saved_key = self.restored.keys.get(logical_id)
        if saved_key:
            key = backend.keys.pop(created_id)
            key.id, key.arn = saved_key["id"], key.arn.replace(created_id, saved_key["id"])
            key.key_material = base64.b64decode(saved_key["material"])
            backend.keys[key.id] = key
        key = backend.keys[saved_key["id"] if saved_key else created_id]
        self._key_material[logical_id] = {
            "id": key.id,
            "material": base64.b64encode(key.key_material).decode(),
        }
        return key.id, key.arn

    def _create_email_resources(self) -> None:
        """SES needs the sender verified; the configuration sets and queues exist as on AWS."""

        refs = self.refs()
        template = tpl.load_template()
        ses = boto3.client("sesv2", endpoint_url=self.moto_url, region_name=REGION)
        ses.create_email_identity(EmailIdentity=LOCAL_SENDER)
        for logical_id in tpl.resources(template, "AWS::SES::ConfigurationSet"):
            ses.create_configuration_set(ConfigurationSetName=refs[logical_id])
        sqs = boto3.client("sqs", endpoint_url=self.moto_url, region_name=REGION)
        self.queue_urls.update(queues.create_queues(sqs, self.stage, refs, template))

    def _create_alarms(self) -> None:
        """The template's alarms and their topic, in moto's CloudWatch and SNS (moto does not evaluate them:
        they stay INSUFFICIENT_DATA; see tools/smoke.py)."""
        template = tpl.load_template()
        refs = self.refs()
        sns = boto3.client("sns", endpoint_url=self.moto_url, region_name=REGION)
        for logical_id in tpl.resources(template, "AWS::SNS::Topic"):
            sns.create_topic(Name=f"{self.stage}-{logical_id}")
        cloudwatch = boto3.client("cloudwatch", endpoint_url=self.moto_url, region_name=REGION)
        for logical_id in tpl.resources(template, "AWS::CloudWatch::Alarm"):
            cloudwatch.put_metric_alarm(**tpl.alarm_kwargs(logical_id, refs, template))

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

    def _start_queue_pollers(self) -> None:
        """Queue messages reach their functions as the template's SQS event sources say."""
        sqs = boto3.client("sqs", endpoint_url=self.moto_url, region_name=REGION)
        refs = self.refs()
        for mapping in queues.queue_mappings(refs):
            source = queues.SqsEventSource(
                mapping=mapping,
                runners=queues.instances(self.runners[mapping.function], mapping.max_concurrency),
                sqs=sqs,
                queue_url=self.queue_urls[mapping.queue],
                queue_arn=refs[f"{mapping.queue}.Arn"],
                region=REGION,
            )
            self.queue_sources.append(source.start())

    def _start_scheduler(self) -> None:
        """The template's scheduled rules invoke their functions (`/_local/schedules` lists and runs them)."""
        period = self.check_interval_minutes * 60 / 4 if self.check_interval_minutes is not None else None
        self.scheduler = schedules.Scheduler(
            schedules.schedule_rules(), self.runners, REGION, ACCOUNT, self.stage, period=period
        ).start()
        assert self.gateway is not None
        self.gateway.mount(schedules.PATH, schedules.SchedulesApp(self.scheduler))

    # -- state across restarts ------------------------------------------------------------------
    def _ddb(self) -> Any:
        return boto3.client("dynamodb", endpoint_url=self.moto_url, region_name=REGION)

    def snapshot(self) -> saved.Snapshot:
        """What a restart brings back (see devstack/state.py)."""
        ddb = self._ddb()
        return saved.Snapshot(
            tables={
                logical_id: saved.scan_items(ddb, name) for logical_id, name in self.physical_names.items()
            },
            emails=[*self.restored.emails, *self.emails()],
            secrets=dict(self._secret_values),
            keys=dict(self._key_material),
            runs=self.run_number,
        )

    def _restore(self) -> None:
        """Put the saved items back before the stream pollers start (a restored agent still waiting for
        its invite gets it)."""
        ddb = self._ddb()
        for logical_id, items in self.restored.tables.items():
            if logical_id in self.physical_names:
                saved.put_items(ddb, self.physical_names[logical_id], items)

    def _resume_checks(self) -> None:
        """Workflows that were running are gone with moto: start each interrupted attempt again (its
        steps are keyed by the attempt, its secret was restored with the key that sealed it). One that
        waited for advanced settings is connecting again, and its workflow asks for them again."""
        from onboarding.agents.models import AgentStatus, Attr
        from onboarding.agents.store import DynamoAgentRepository
        from onboarding.core.executions import execution_name, workflow_input

        repo = DynamoAgentRepository(self.physical_names["AgentsTable"], self._ddb())
        sfn = boto3.client("stepfunctions", endpoint_url=self.moto_url, region_name=REGION)
        refs = self.refs()
        timeout = int(self.function_environments()["AuthCallbackFunction"]["SETTINGS_TIMEOUT_SECONDS"])
        for item in self.restored.tables.get("AgentsTable", []):
            status = item.get("status", {}).get("S")
            if item.get("entity", {}).get("S") != "agent" or status not in {"connecting", "needs_settings"}:
                continue
            record = repo.get_record(item["tenantId"]["S"], item["agentId"]["S"])
            if record is None:
                continue
            agent, attempt = record.agent, record.connection.connect_attempt
            if agent.status is AgentStatus.NEEDS_SETTINGS:
                repo.transition(
                    agent.tenant_id,
                    agent.agent_id,
                    AgentStatus.CONNECTING,
                    expected_version=agent.version,
                    remove_attributes=(Attr.TASK_TOKEN,),
                )
            sfn.start_execution(
                stateMachineArn=refs["VerifyMailboxStateMachineAliaslive"],  # as the connect page starts it
                name=execution_name(agent.agent_id, attempt),
                input=workflow_input(
                    agent.tenant_id,
                    agent.agent_id,
                    attempt,
                    settings_timeout_seconds=timeout,
                    method=record.connection.verify_method or "ews",
                ),
            )

    def restored_counts(self) -> tuple[int, int]:
        """(agents, emails) brought back from earlier runs."""
        agents = sum(
            1
            for item in self.restored.tables.get("AgentsTable", [])
            if item.get("entity", {}).get("S") == "agent"
        )
        return agents, len(self.restored.emails)

    # -- sent mail ------------------------------------------------------------------------------
    def emails(self) -> list[dict[str, Any]]:
        """This run's emails, oldest first, each stamped with the run and when the stack first saw it."""
        with self._emails_lock:
            sent = mailbox.sent_emails()
            for message in sent[len(self._emails) :]:
                self._emails.append({**message, "run": self.run_number, "sentAt": _now_iso()})
            return list(self._emails)

    def all_emails(self) -> list[dict[str, Any]]:
        return [*self.restored.emails, *self.emails()]

    def _print_new_emails(self) -> None:
        emails = self.emails()
        for sent in emails[self._emails_printed :]:
            print(mailbox.summary(sent), flush=True)
        self._emails_printed = len(emails)

    def _sent_mail(self, request: Request) -> Response:
        """Every email sent, newest first: what a local user reads instead of an inbox. A browser gets
        the sent-mail page; anything else (or `/_local/emails.json`) the JSON list. `?to=<address>`
        keeps the emails to one address (any letter case)."""
        headers = {"Cache-Control": "no-store"}
        emails = list(reversed(self.all_emails()))
        if to := request.args.get("to", "").strip().lower():
            emails = [e for e in emails if str(e.get("to", "")).lower() == to]
        wants = request.accept_mimetypes.best_match(["application/json", "text/html"])
        if request.path.endswith(".json") or wants != "text/html":
            return Response(json.dumps(emails), content_type="application/json", headers=headers)
        page = mailbox.sent_mail_page(emails, current_run=self.run_number)
        return Response(page, content_type="text/html; charset=utf-8", headers=headers)

    def _bind_gateway(self) -> None:
        # werkzeug logs every request of moto and the gateway alike; keep the console for what matters.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.gateway = Gateway(self.runners)
        self.gateway.add_local_route("GET", "/_local/health", self._health)
        self.gateway.add_local_route("GET", "/_local/emails", self._sent_mail)
        self.gateway.add_local_route("GET", "/_local/emails.json", self._sent_mail)
        self.gateway.add_local_route("GET", "/_local/outputs.json", self._outputs)
        self.gateway.add_local_route("GET", "/_local/events.json", self._events)
        self.gateway.add_local_route("GET", "/_local/events", self._bus_events)
        self.gateway.add_local_route("GET", "/", self._dashboard)
        for name, content_type in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            self.gateway.add_local_route("GET", f"/_local/{name}", _static(DASHBOARD / name, content_type))
        self._gateway_server = _bind(self.gateway_port, self.gateway, "API gateway and dashboard")
        self.gateway_port = self._gateway_server.server_address[1]

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

    def _outputs(self, _: Request) -> Response:
        """The stack's outputs (as CloudFormation gives them after a deploy): what `make smoke` reads."""
        return Response(json.dumps(self.outputs()), content_type="application/json")

    def _events(self, _: Request) -> Response:
        """EventBridge events delivered to functions so far, oldest first: (function, event)."""
        delivered = self.events.delivered if self.events is not None else []
        body = [{"function": name, "event": event} for name, event in delivered]
        return Response(
            json.dumps(body), content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    def bus_events(self) -> list[dict[str, Any]]:
        """What was published on the stack's bus this run (`Agent Status Changed`), oldest first."""
        logs = boto3.client("logs", endpoint_url=self.moto_url, region_name=REGION)
        return [event for group in self.bus_logs.values() for event in bus.published(logs, group)]

    def _bus_events(self, request: Request) -> Response:
        """The bus's events, newest first: the status-events page for a browser, else (or with
        `?format=json`) the JSON list. `?agent=<agentId>` keeps one agent's."""
        headers = {"Cache-Control": "no-store"}
        events = list(reversed(self.bus_events()))
        if agent := request.args.get("agent", "").strip():
            events = [e for e in events if (e.get("detail") or {}).get("agentId") == agent]
        wants = request.accept_mimetypes.best_match(["application/json", "text/html"])
        if request.args.get("format") == "json" or wants != "text/html":
            return Response(json.dumps(events), content_type="application/json", headers=headers)
        names = ", ".join(self.refs()[logical_id] for logical_id in self.bus_logs)
        page = bus.events_page(events, bus=names)
        return Response(page, content_type="text/html; charset=utf-8", headers=headers)

    def _health(self, _: Request) -> Response:
        if not self.ready:
            return Response(json.dumps({"status": "starting"}), status=503, content_type="application/json")
        return Response(json.dumps({"status": "ok", "moto": self.moto_url}), content_type="application/json")


def _print_denial(decision: enforce.Decision) -> None:
    """A refused call on the console: who, what, on which resource (never a key or a value)."""
    if decision.denied is not None:
        denied = decision.denied
        print(
            f"IAM DENIED {decision.principal.logical_id}: {denied.action} on {denied.resource} "
            f"({decision.service}.{decision.operation}; no statement of its policy in template.yaml allows it)",
            flush=True,
        )


def _now_iso() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
