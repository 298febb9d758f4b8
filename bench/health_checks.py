"""The scheduled health checks (issue 20, "Measured"): the dispatcher at 10,000 connected agents, the checks
through the queue, requests per check, and what a connected mailbox costs a month.

1. Dispatcher: moto in-process with the template's tables (the `ByCheckDue` index as deployed), N connected
   agents scheduled by `onboarding.agents.schedule` (each one a copy of a real agent item, its Exchange
   trace padded to the size the onboarding bench measured), dispatched every 5 minutes (the template's
   rate) for `--hours` (moto's index query walks every item, so a whole 6 h interval at 10,000 agents takes
   long; the due agents of every dispatch of the interval are computed from the schedule itself, and the
   dispatches run must find the same). After each dispatch the queue is drained by the real
   `HealthChecker` with a healthy probe (every check a success), so each agent comes due again an interval
   later, as on AWS. Reads are counted from what each Query returned (KEYS_ONLY index entries, eventually
   consistent: 0.5 RRU per 4 KB a page); time is wall time of the dispatcher's call, moto's included.
2. Checks through the queue: the real checker (`HealthChecker` + `ExchangeProbe`, the checker's settings from
   template.yaml's CheckMailboxFunction environment) against the Exchange simulator, fed from an SQS queue
   (moto) by `CheckConcurrency` workers taking batches of 5 (the template's event source), everything in
   this one process on this machine's cores.
3. Requests per check, from the simulators' request records: a healthy Exchange check on an NTLM and on a
   Basic server, and a Microsoft 365 check cold (a fresh MSAL app: its discovery) and in steady state.
4. Cost per connected mailbox per month at 4 checks a day: DynamoDB capacity units computed from the item
   images before and after each write (the table, and each index the write touches), KMS and SQS calls
   counted, Lambda from the functions' memory and durations (measured here, and the honest estimates for a
   real server beside them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.client
from moto import mock_aws
from pydantic import SecretStr

from bench.onboarding import (  # one price list for every bench
    DDB_ON_DEMAND_USD_PER_RRU,
    DDB_ON_DEMAND_USD_PER_WRU,
    KMS_USD_PER_REQUEST,
    LAMBDA_ARM_USD_PER_GB_SECOND,
    LAMBDA_USD_PER_REQUEST,
    PRICES_AS_OF,
)
from devstack import template as tpl

BENCH_ENVIRONMENT = {  # set by main(): nothing here can reach AWS; our log lines below warnings
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "mailbox-onboarding",
    "POWERTOOLS_METRICS_NAMESPACE": "MailboxOnboarding-bench",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}

SQS_USD_PER_REQUEST = 0.40 / 1_000_000  # standard queue, after the first million a month
SCHEDULER_USD_PER_INVOCATION = 1.00 / 1_000_000  # EventBridge Scheduler; a scheduled rule is free
CHECKS_PER_MONTH = 4 * 30  # 4 checks a day (the 6 h default interval)
DISPATCHES_PER_MONTH = 12 * 24 * 30  # rate(5 minutes)

TABLE, CREDENTIALS = "bench-agents", "bench-credentials"
T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
RATE = timedelta(minutes=5)  # the template's schedule (DispatchChecksFunction: rate(5 minutes))
ONBOARDING_ITEM_BYTES = 4800  # the agent items' average size the onboarding bench measured (with the trace)


def _indexes() -> dict[str, tuple[str, ...]]:
    """The AgentsTable's indexes in template.yaml: their keys (ByStatus projects ALL, ByCheckDue KEYS_ONLY)."""
    table = tpl.load_template()["Resources"]["AgentsTable"]["Properties"]
    found = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    assert found["ByStatus"]["Projection"]["ProjectionType"] == "ALL"
    assert found["ByCheckDue"]["Projection"]["ProjectionType"] == "KEYS_ONLY"
    return {name: tuple(k["AttributeName"] for k in i["KeySchema"]) for name, i in found.items()}


INDEXES = _indexes()
TABLE_KEYS = ("pk", "sk")


# ---- DynamoDB capacity, from item images -------------------------------------------------------------
def value_size(value: dict[str, Any]) -> int:
    """Bytes of one typed attribute value, as DynamoDB's item-size rules count them."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = len(inner.lstrip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "B":
        return len(inner) if isinstance(inner, bytes) else len(str(inner))
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in inner.items())
    if kind in {"SS", "NS", "BS"}:
        return sum(len(str(v)) for v in inner)
    raise ValueError(kind)


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


@dataclass(frozen=True)
class Layout:
    """How the agents table stores an agent: its indexes' projections, and attributes kept elsewhere."""

    name: str
    include: frozenset[str] | None  # ByStatus's projected attributes beyond the keys (None: ALL)
    elsewhere: frozenset[str] = frozenset()  # attributes moved to an item of their own (not written here)


def write_units(
    before: dict[str, Any] | None, after: dict[str, Any] | None, layout: Layout | None = None
) -> dict[str, float]:
    """WRUs of one write: the table (the larger image, per KB) and each index the write changes."""
    layout = layout or SHIPPED
    if layout.elsewhere:
        before = {k: v for k, v in before.items() if k not in layout.elsewhere} if before else before
        after = {k: v for k, v in after.items() if k not in layout.elsewhere} if after else after
    units = {"table": float(max(1, math.ceil(max(item_size(before), item_size(after)) / 1024)))}
    for index, keys in INDEXES.items():
        projected = layout.include if index == "ByStatus" else frozenset()

        def entry(
            item: dict[str, Any], keys: tuple[str, ...] = keys, projected: Any = projected
        ) -> dict[str, Any]:
            if projected is None:
                return item
            return {k: v for k, v in item.items() if k in {*keys, *TABLE_KEYS, *projected}}

        was = before is not None and all(k in before for k in keys)
        now = after is not None and all(k in after for k in keys)
        cost = 0
        if was and now:
            old, new = entry(before), entry(after)  # type: ignore[arg-type]
            if any(before[k] != after[k] for k in keys):  # type: ignore[index]  # the entry moves
                cost = math.ceil(item_size(old) / 1024) + math.ceil(item_size(new) / 1024)
            elif old != new:
                cost = math.ceil(max(item_size(old), item_size(new)) / 1024)
        elif was:
            cost = math.ceil(item_size(entry(before)) / 1024)  # type: ignore[arg-type]
        elif now:
            cost = math.ceil(item_size(entry(after)) / 1024)  # type: ignore[arg-type]
        units[index] = float(cost)
    return units


def _public_fields() -> frozenset[str]:
    from onboarding.agents.models import AGENT_FIELDS, HEALTH_FIELDS

    return frozenset(AGENT_FIELDS | HEALTH_FIELDS)


SHIPPED = Layout("as shipped (ByStatus projects ALL)", None)


def layouts() -> list[Layout]:
    from onboarding.agents.models import Attr

    public = _public_fields()
    return [
        SHIPPED,
        Layout("ByStatus projecting the public agent only (INCLUDE)", public),
        Layout("... and the Exchange trace in an item of its own", public, frozenset({Attr.EXCHANGE_TRACE})),
    ]


@dataclass
class Meter:
    """Every AWS call made through botocore in this process, with DynamoDB capacity computed from the items
    (moto does not report it): writes from the item before and after, reads from what was returned."""

    calls: Counter[str] = field(default_factory=Counter)
    rru: float = 0.0
    rru_by_table: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    wru: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    query_pages: int = 0
    overhead: float = 0.0  # seconds spent reading the images (not the code's)
    writes: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.rru, self.query_pages, self.overhead = 0.0, 0, 0.0
            self.rru_by_table.clear()
            self.wru.clear()
            self.writes.clear()

    def table_rru(self, table: str) -> float:
        with self.lock:
            return self.rru_by_table[table]

    def snapshot(self) -> tuple[Counter[str], float, dict[str, float], int]:
        with self.lock:
            return Counter(self.calls), self.rru, dict(self.wru), self.query_pages

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = botocore.client.BaseClient._make_api_call
        meter = self

        def metered(client: Any, operation: str, params: dict[str, Any]) -> Any:
            service = client.meta.service_model.service_name
            if service != "dynamodb" or operation not in {"UpdateItem", "PutItem", "DeleteItem"}:
                response = original(client, operation, params)
                meter._read(service, operation, params, response)
                return response

            def image() -> dict[str, Any] | None:
                key = params.get("Key") or {k: params["Item"][k] for k in TABLE_KEYS}
                found = original(
                    client, "GetItem", {"TableName": params["TableName"], "Key": key, "ConsistentRead": True}
                )
                return found.get("Item")

            started = time.perf_counter()
            before = image()
            spent = time.perf_counter() - started
            try:
                response = original(client, operation, params)
            except client.exceptions.ConditionalCheckFailedException:
                # A refused conditional write is billed too (for the item's size), and changes no index.
                with meter.lock:
                    meter.calls[f"dynamodb:{operation} (condition failed)"] += 1
                    meter.wru["table"] += max(1, math.ceil(item_size(before) / 1024))
                raise
            started = time.perf_counter()
            after = image()
            spent += time.perf_counter() - started
            with meter.lock:
                meter.overhead += spent
                meter.calls[f"dynamodb:{operation}"] += 1
                meter.writes.append((params["TableName"], before, after))
                for part, units in write_units(before, after).items():
                    meter.wru[part] += units
            return response

        botocore.client.BaseClient._make_api_call = metered
        try:
            yield
        finally:
            botocore.client.BaseClient._make_api_call = original

    def _read(self, service: str, operation: str, params: dict[str, Any], response: Any) -> None:
        with self.lock:
            self.calls[f"{service}:{operation}"] += 1
            if service != "dynamodb":
                return
            factor = 1.0 if params.get("ConsistentRead") else 0.5
            units = 0.0
            if operation == "GetItem":
                units = factor * max(1, math.ceil(item_size(response.get("Item")) / 4096))
            elif operation == "Query":
                self.query_pages += 1
                size = sum(item_size(i) for i in response.get("Items", []))
                units = factor * max(1, math.ceil(size / 4096))
            self.rru += units
            self.rru_by_table[params.get("TableName", "")] += units


# ---- the stack's pieces, as the template gives them ------------------------------------------------------
def refs(key_arn: str, queue_url: str) -> dict[str, str]:
    return {
        **tpl.parameter_defaults(),
        "Stage": "bench",
        "AWS::Region": "us-east-1",
        "AWS::AccountId": "123456789012",
        "AWS::Partition": "aws",
        "AWS::StackName": "bench",
        "AgentsTable": TABLE,
        "CredentialsTable": CREDENTIALS,
        "CredentialsKey.Arn": key_arn,
        "ChecksQueue": queue_url,
        "ChecksQueue.Arn": "arn:aws:sqs:us-east-1:123456789012:checks",
        "EntraClientSecretArn": "",
        "AgentEventsBus": "bench-agents",
        "InviteSender": "invites@example.com",
        "PublicBaseUrl": "",
    }


def one_dynamodb_request_at_a_time() -> None:
    """moto applies an update's actions one by one; the checker's threads must not see half of one (as the
    local stack does: devstack.stack.OneDynamoDBRequestAtATime)."""
    from moto.dynamodb.responses import DynamoHandler

    lock, call_action = threading.RLock(), DynamoHandler.call_action

    def one_at_a_time(handler: DynamoHandler) -> Any:
        with lock:
            return call_action(handler)

    DynamoHandler.call_action = one_at_a_time  # type: ignore[method-assign]


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Our JSON log lines go to a buffer (the bench prints tables)."""
    from onboarding.core.observability import logger

    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    saved = list(logger._logger.handlers)
    for h in saved:
        logger._logger.removeHandler(h)
    logger._logger.addHandler(handler)
    logger._logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger._logger.removeHandler(handler)
        for h in saved:
            logger._logger.addHandler(h)


def silence_metrics() -> None:
    from onboarding.core.observability import metrics

    metrics.add_metric = lambda **_: None  # type: ignore[method-assign]  # nothing flushes them here


# ---- 1. the dispatcher -------------------------------------------------------------------------------
def seed_agents(n: int, ddb: Any) -> tuple[int, str, list[str]]:
    """n connected Exchange agents, each a copy of one real agent item (added and verified through the
    repository, its connection and trace set as verification sets them, the trace padded so the item has
    the size the onboarding bench measured), scheduled at their own phase. Returns the item's size and the
    tenant."""
    from onboarding import deps
    from onboarding.agents import manage
    from onboarding.agents.models import AgentStatus, Attr, NewAgent
    from onboarding.agents.schedule import scheduled_attributes
    from onboarding.core.ids import new_id

    repo = deps.agent_repository(TABLE)
    tenant = "bench"
    agent = manage.add_agent(repo, tenant, NewAgent(name="Ann", email="ann@contoso.com", type="ms_exchange"))
    for step in (AgentStatus.INVITED, AgentStatus.CONNECTING):
        repo.transition(tenant, agent.agent_id, step)
    connection = {
        Attr.ATTEMPT: 1,
        Attr.EWS_URL: "https://mail.contoso.com/EWS/Exchange.asmx",
        Attr.AUTH_TYPE: "NTLM",
        Attr.SERVER_BUILD: "15.2.1544.4",
        Attr.EXCHANGE_USERNAME: "CONTOSO\\ann",
        Attr.INBOX_COUNT: 42,
        Attr.VERIFY_METHOD: "ews",
        Attr.EXCHANGE_TRACE: "",
    }
    repo.transition(
        tenant,
        agent.agent_id,
        AgentStatus.VERIFIED,
        set_attributes={**connection, **scheduled_attributes(agent.agent_id, T0)},
    )
    key = {"pk": {"S": f"TENANT#{tenant}"}, "sk": {"S": f"AGENT#{agent.agent_id}"}}
    item = ddb.get_item(TableName=TABLE, Key=key)["Item"]
    trace_name = Attr.EXCHANGE_TRACE
    item[trace_name] = {"S": "x" * max(0, ONBOARDING_ITEM_BYTES - item_size(item))}
    size = item_size(item)
    ddb.delete_item(TableName=TABLE, Key=key)
    old = agent.agent_id
    batch: list[dict[str, Any]] = []
    ids = []
    for _ in range(n):
        agent_id = new_id()
        ids.append(agent_id)
        copy = {
            name: ({"S": value["S"].replace(old, agent_id)} if "S" in value else value)
            for name, value in item.items()
        }
        schedule = scheduled_attributes(agent_id, T0)
        copy[Attr.CHECK_SHARD] = {"S": schedule[Attr.CHECK_SHARD]}
        copy[Attr.CHECK_DUE_AT] = {"S": schedule[Attr.CHECK_DUE_AT]}
        batch.append({"PutRequest": {"Item": copy}})
        if len(batch) == 25:
            ddb.batch_write_item(RequestItems={TABLE: batch})
            batch = []
    if batch:
        ddb.batch_write_item(RequestItems={TABLE: batch})
    return size, tenant, ids


@dataclass
class DispatchFigures:
    agents: int
    item_bytes: int
    dispatches: int = 0
    queries: list[int] = field(default_factory=list)
    due: list[int] = field(default_factory=list)
    rru: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    lease_wru: dict[str, float] = field(default_factory=dict)
    layout_wru: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    leases: int = 0
    checks: int = 0
    check_calls: Counter[str] = field(default_factory=Counter)
    check_rru: float = 0.0
    check_wru: dict[str, float] = field(default_factory=dict)
    sqs_calls: Counter[str] = field(default_factory=Counter)
    never_checked: int = 0
    checked_twice: int = 0
    expected_due: list[int] = field(default_factory=list)

    def layout_wru_add(self, phase: str, writes: list[tuple[str, Any, Any]]) -> None:
        for layout in layouts():
            for table, before, after in writes:
                if table == TABLE:
                    self.layout_wru[layout.name][phase] += sum(write_units(before, after, layout).values())  # type: ignore[assignment]


def bench_dispatcher(n: int, hours: float) -> DispatchFigures:
    from onboarding import deps
    from onboarding.agents.schedule import first_due
    from onboarding.health.check import HealthChecker
    from onboarding.health.dispatch import Dispatcher, DueChecks
    from onboarding.health.models import CheckMessage, HealthPolicy, ProbeResult, Verdict

    healthy = ProbeResult(Verdict.HEALTHY, inbox_item_count=42)

    class Healthy:
        def probe(self, record: Any) -> ProbeResult:
            return healthy

    meter = Meter()
    with mock_aws(), quiet_logs():
        deps.reset()
        ddb = boto3.client("dynamodb")
        tpl.create_tables(ddb, {"AgentsTable": TABLE, "CredentialsTable": CREDENTIALS})
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="checks")["QueueUrl"]
        print(f"seeding {n} connected agents ...", flush=True)
        size, _, ids = seed_agents(n, ddb)
        figures = DispatchFigures(agents=n, item_bytes=size)
        # Due per dispatch over a whole interval, from the schedule itself (what the index holds)
        windows = Counter(int((first_due(i, T0) - T0) / RATE) + 1 for i in ids)
        figures.expected_due = [windows.get(k, 0) for k in range(1, int(HealthPolicy().interval / RATE) + 2)]
        policy = HealthPolicy()
        clock = {"now": T0}
        dispatcher = Dispatcher(
            DueChecks(TABLE, ddb),
            sqs,
            queue,
            policy,
            clock=lambda: clock["now"],
        )
        checker = HealthChecker(
            deps.agent_repository(TABLE),
            exchange=lambda: Healthy(),
            microsoft=None,
            policy=policy,
            clock=lambda: clock["now"] + timedelta(minutes=1),
        )
        checked: Counter[str] = Counter()
        lease_wru: defaultdict[str, float] = defaultdict(float)
        check_wru: defaultdict[str, float] = defaultdict(float)
        steps = min(int(policy.interval / RATE) + 1, max(1, int(timedelta(hours=hours) / RATE)))
        with meter.installed():
            for step in range(1, steps + 1):
                clock["now"] = T0 + step * RATE
                meter.reset()
                started = time.perf_counter()
                report = dispatcher.dispatch()
                figures.seconds.append(time.perf_counter() - started - meter.overhead)
                calls, rru, wru, pages = meter.snapshot()
                figures.queries.append(pages)
                figures.due.append(report.read)
                figures.rru.append(rru)
                figures.leases += report.leased
                figures.sqs_calls.update({k: v for k, v in calls.items() if k.startswith("sqs:")})
                for part, units in wru.items():
                    lease_wru[part] += units
                figures.layout_wru_add("lease", meter.writes)
                # the checker drains the queue (as the SQS event source would, in batches)
                meter.reset()
                while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
                    for m in messages:
                        message = CheckMessage.model_validate_json(m["Body"])
                        checker.check(message)
                        checked[message.agent_id] += 1
                    sqs.delete_message_batch(
                        QueueUrl=queue,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )
                calls, rru, wru, _ = meter.snapshot()
                figures.check_calls.update({k: v for k, v in calls.items() if k.startswith("dynamodb:")})
                figures.sqs_calls.update({k: v for k, v in calls.items() if k.startswith("sqs:")})
                figures.check_rru += rru
                for part, units in wru.items():
                    check_wru[part] += units
                figures.layout_wru_add("result", meter.writes)
                figures.dispatches += 1
                if step % 12 == 0:
                    print(f"  {step * 5} min: {sum(figures.due)} due so far", flush=True)
        figures.checks = sum(checked.values())
        figures.lease_wru = dict(lease_wru)
        figures.check_wru = dict(check_wru)
        figures.never_checked = n - len(checked)
        figures.checked_twice = sum(1 for c in checked.values() if c > 1)
        deps.reset()
    return figures


def print_dispatcher(f: DispatchFigures) -> None:
    print(
        f"\nDispatcher: {f.agents} connected agents (items of {f.item_bytes} bytes), a dispatch every 5 min "
        f"for {f.dispatches * 5} min; moto in-process"
    )
    print(f"{'per dispatch':44} {'median':>9} {'min':>9} {'max':>9}")
    rows: list[tuple[str, list[float]]] = [
        ("Query pages (16 shards)", [float(q) for q in f.queries]),
        ("due agents found (and leased)", [float(d) for d in f.due]),
        ("read units (computed, eventually consistent)", f.rru),
        ("time, s (moto's included, the bench's reads not)", f.seconds),
    ]
    for label, values in rows:
        print(f"{label:44} {statistics.median(values):9.2f} {min(values):9.2f} {max(values):9.2f}")
    e = f.expected_due
    print(
        f"due per dispatch over the whole interval ({len(e)} dispatches, from the schedule): median "
        f"{statistics.median(e):.0f}, min {min(e)}, max {max(e)}, total {sum(e)}; measured dispatches found "
        f"{'the same' if f.due == e[: len(f.due)] else 'OTHER counts: ' + str(list(zip(f.due, e, strict=False)))}"
    )
    print(
        f"checks done: {f.checks} ({f.agents - f.never_checked} agents of {f.agents} checked; "
        f"{f.checked_twice} twice: due again within the window after their first check)"
    )
    per = max(f.leases, 1)
    lease = {k: round(v / per, 2) for k, v in f.lease_wru.items()}
    print(f"lease write per due agent, WRU: {lease} (total {sum(lease.values()):.2f})")
    checks = max(f.checks, 1)
    print(
        f"healthy check's agent read + write, per check: {f.check_rru / checks:.2f} RRU, "
        f"WRU { ({k: round(v / checks, 2) for k, v in f.check_wru.items()}) } "
        f"(total {sum(f.check_wru.values()) / checks:.2f}); calls {dict(f.check_calls)}"
    )
    print(f"SQS calls over the run: {dict(f.sqs_calls)}")
    print("WRU per check (lease + result) if the agents table were laid out otherwise (same writes):")
    for name, phases in f.layout_wru.items():
        per_lease, per_result = phases["lease"] / max(f.leases, 1), phases["result"] / max(f.checks, 1)
        print(f"  {name:56} {per_lease:5.1f} + {per_result:5.1f} = {per_lease + per_result:5.1f}")


# ---- 2 + 3. the checker against the simulators -----------------------------------------------------------
@dataclass
class CheckFigures:
    exchange: dict[str, dict[str, Any]] = field(default_factory=dict)  # auth type -> figures of one check
    throughput: dict[str, Any] = field(default_factory=dict)
    m365: dict[str, dict[str, Any]] = field(default_factory=dict)  # cold / steady -> figures
    streams: dict[str, Any] = field(default_factory=dict)


def connected_exchange_agent(
    repo: Any, credentials: Any, email: str, password: str, settings: Any, tenant: str = "bench"
) -> Any:
    from onboarding.agents import manage
    from onboarding.agents.models import AgentStatus, Attr, NewAgent
    from onboarding.agents.schedule import scheduled_attributes

    agent = manage.add_agent(repo, tenant, NewAgent(name="Owner", email=email, type="ms_exchange"))
    for step in (AgentStatus.INVITED, AgentStatus.CONNECTING):
        repo.transition(tenant, agent.agent_id, step)
    credentials.put(tenant, agent.agent_id, SecretStr(password))
    repo.transition(
        tenant,
        agent.agent_id,
        AgentStatus.VERIFIED,
        set_attributes={
            Attr.ATTEMPT: 1,
            Attr.EWS_URL: settings.ews_url,
            Attr.AUTH_TYPE: settings.auth_type,
            Attr.SERVER_BUILD: settings.server_build,
            Attr.EXCHANGE_USERNAME: settings.username,
            Attr.VERIFY_METHOD: "ews",
            **scheduled_attributes(agent.agent_id, datetime.now(UTC)),
        },
    )
    return agent


def bench_checks(n_checks: int) -> CheckFigures:
    from devstack.exchange_sim import ExchangeSimulator
    from devstack.identity_sim import IdentitySimulator
    from onboarding import deps
    from onboarding.exchange import ExchangeContext, discover
    from onboarding.health.check import HealthChecker
    from onboarding.health.models import CheckMessage, Verdict
    from onboarding.health.probes import REFRESH_TOKEN, ExchangeProbe, MicrosoftProbe
    from onboarding.settings import CheckMailboxSettings

    figures = CheckFigures()
    meter = Meter()
    one_dynamodb_request_at_a_time()
    with (
        mock_aws(),
        quiet_logs(),
        ExchangeSimulator() as sim,
        IdentitySimulator(redirect_uris=["https://connect.example.com/callback"]) as idsim,
    ):
        deps.reset()
        ddb = boto3.client("dynamodb")
        tpl.create_tables(ddb, {"AgentsTable": TABLE, "CredentialsTable": CREDENTIALS})
        key_arn = boto3.client("kms").create_key(Description="credentials")["KeyMetadata"]["Arn"]
        secret = boto3.client("secretsmanager").create_secret(
            Name="entra-app", SecretString=idsim.client_secret
        )
        queue = boto3.client("sqs").create_queue(QueueName="checks")["QueueUrl"]
        env = tpl.function_environment("CheckMailboxFunction", refs(key_arn, queue))
        env.update(idsim.environment())
        env.update(
            {
                "M365_CLIENT_SECRET_ARN": secret["ARN"],
                "EXCHANGE_ALLOW_NETWORKS": "127.0.0.0/8",  # the simulator lives on loopback
                "EXCHANGE_CA_BUNDLE": sim.ca_bundle,
            }
        )
        settings = CheckMailboxSettings.from_environ(env)
        repo = deps.agent_repository(TABLE)
        credentials = deps.credential_store(CREDENTIALS, key_arn)
        exchange = ExchangeProbe(credentials, settings.exchange)
        checker = HealthChecker(repo, exchange=lambda: exchange, microsoft=None, policy=settings.health)

        # -- one healthy check per kind of server: requests and AWS calls ------------------------------
        mailboxes = {"alice@contoso.test": "Alice-Pass-1", "bea@fabrikam.test": "Bea-Pass-4"}
        agents = []
        for email, password in mailboxes.items():
            found = discover(email, password, ExchangeContext(config=settings.exchange))
            agent = connected_exchange_agent(repo, credentials, email, password, found)
            agents.append(agent)
            sim.reset_observations()
            meter.reset()
            with meter.installed():
                started = time.perf_counter()
                report = checker.check(
                    CheckMessage(tenant_id="bench", agent_id=agent.agent_id, cause="schedule")
                )
                seconds = time.perf_counter() - started
            assert report.verdict is Verdict.HEALTHY, report
            calls, rru, wru, _ = meter.snapshot()
            figures.exchange[found.auth_type] = {
                "mailbox": email,
                "requests": sum(1 for r in sim.requests_seen if r.path.lower().startswith("/ews/")),
                "operations": [r.operation for r in sim.requests_seen if r.path.lower().startswith("/ews/")],
                "password_sent": len(sim.auth_attempts),
                "calls": calls,
                "rru": rru,
                "credentials_rru": meter.table_rru(CREDENTIALS),
                "wru": wru,
                "seconds": seconds,
            }

        # -- throughput through the queue at the default concurrency ---------------------------------
        concurrency = int(tpl.parameter_defaults()["CheckConcurrency"])
        sqs = boto3.client("sqs")
        pool = [
            connected_exchange_agent(repo, credentials, email, password, found_settings, tenant=f"pool{i}")
            for email, password, found_settings in [
                (e, p, discover(e, p, ExchangeContext(config=settings.exchange)))
                for e, p in mailboxes.items()
            ]
            for i in range(5)
        ]
        for i in range(n_checks):
            agent = pool[i % len(pool)]
            body = CheckMessage(tenant_id=agent.tenant_id, agent_id=agent.agent_id, cause="manual").body()
            sqs.send_message(QueueUrl=queue, MessageBody=body)
        sim.reset_observations()
        done: list[float] = []
        cpu: list[float] = []
        verdicts: Counter[str] = Counter()
        lock = threading.Lock()

        def worker() -> None:
            client = boto3.client("sqs")
            while True:
                batch = client.receive_message(QueueUrl=queue, MaxNumberOfMessages=5).get("Messages")
                if not batch:
                    return
                for m in batch:
                    started, thread_cpu = time.perf_counter(), time.thread_time()
                    report = checker.check(CheckMessage.model_validate_json(m["Body"]))
                    with lock:
                        done.append(time.perf_counter() - started)
                        cpu.append(time.thread_time() - thread_cpu)
                        verdicts[str(report.verdict)] += 1
                client.delete_message_batch(
                    QueueUrl=queue,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                    ],
                )

        meter.reset()
        cpu0, started = time.process_time(), time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        with meter.installed():
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        wall = time.perf_counter() - started
        figures.throughput = {
            "concurrency": concurrency,
            "checks": len(done),
            "wall": wall,
            "cpu": time.process_time() - cpu0,
            "per_second": len(done) / wall,
            "p50": statistics.median(done),
            "p95": sorted(done)[int(0.95 * (len(done) - 1))],
            "cpu_p50": statistics.median(cpu),
            "verdicts": dict(verdicts),
            "ews_requests": sum(1 for r in sim.requests_seen if r.path.lower().startswith("/ews/")),
        }

        # -- the stream consumers those checks' writes trigger (the template's filters), PublishStatus run
        records = [stream_record(before, after) for table, before, after in meter.writes if table == TABLE]
        figures.streams = stream_consumers(
            records, figures.throughput["checks"], env_refs=refs(key_arn, queue)
        )

        # -- Microsoft 365: cold (a fresh MSAL app) and steady state ---------------------------------
        from onboarding.agents import manage
        from onboarding.agents.models import AgentStatus, Attr, NewAgent
        from onboarding.m365.graph import GraphClient
        from onboarding.m365.oauth import OAuthClient, client_secret_reader

        config = settings.m365
        person = _person(idsim)
        oauth0 = OAuthClient(config, lambda: idsim.client_secret)
        flow = oauth0.start(login_hint="mia@m365.test", redirect_uri="https://connect.example.com/callback")
        grant = oauth0.redeem(flow, person.sign_in(flow["auth_uri"], "mia@m365.test"))
        agent = manage.add_agent(
            repo, "bench", NewAgent(name="Mia", email="mia@m365.test", type="ms_exchange")
        )
        for step in (AgentStatus.INVITED, AgentStatus.CONNECTING):
            repo.transition("bench", agent.agent_id, step)
        credentials.put("bench", agent.agent_id, grant.refresh_token, purpose=REFRESH_TOKEN)
        repo.transition(
            "bench",
            agent.agent_id,
            AgentStatus.VERIFIED,
            set_attributes={Attr.ATTEMPT: 1, Attr.VERIFY_METHOD: "graph"},
        )
        built: dict[str, Any] = {}

        def microsoft() -> MicrosoftProbe:
            if "probe" not in built:  # as check_mailbox builds it: the secret read, MSAL's app, at first use
                oauth = OAuthClient(config, client_secret_reader(config.client_secret_arn))
                graph = GraphClient(config)
                built["probe"] = MicrosoftProbe(credentials, lambda: oauth, lambda: graph)
            return built["probe"]

        m365_checker = HealthChecker(
            repo, exchange=lambda: exchange, microsoft=microsoft, policy=settings.health
        )
        for phase in ("cold", "steady"):
            idsim.reset_observations()
            meter.reset()
            with meter.installed():
                started = time.perf_counter()
                report = m365_checker.check(
                    CheckMessage(tenant_id="bench", agent_id=agent.agent_id, cause="manual")
                )
                seconds = time.perf_counter() - started
            calls, rru, wru, _ = meter.snapshot()
            figures.m365[phase] = {
                "verdict": str(report.verdict),
                "requests": [f"{r.service} {r.method} {r.path}" for r in idsim.requests_seen],
                "calls": calls,
                "rru": rru,
                "wru": wru,
                "seconds": seconds,
            }
        deps.reset()
    return figures


def stream_record(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """The agents-table stream record of one write (NEW_AND_OLD_IMAGES), as Lambda hands it over."""
    image = after or before or {}
    body: dict[str, Any] = {"Keys": {k: image[k] for k in TABLE_KEYS}, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    if before:
        body["OldImage"] = before
    if after:
        body["NewImage"] = after
    name = "REMOVE" if after is None else "MODIFY" if before else "INSERT"
    return {
        "eventID": "1",
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            **body,
            "SequenceNumber": "1",
            "SizeBytes": item_size(image),
            "ApproximateCreationDateTime": 0,
        },
        "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/stream/2026",
    }


def stream_consumers(records: list[dict[str, Any]], checks: int, env_refs: dict[str, str]) -> dict[str, Any]:
    """Per check: the agents-table stream records each mapping's filter lets through; PublishStatus invoked
    once per record (the worst case: at a few checks a second, a 1 s batching window holds one or two), its
    warm duration measured here."""
    from devstack.runtime import LambdaContext
    from devstack.streams import accepted, stream_mappings

    figures: dict[str, Any] = {"records": len(records) / checks}
    for mapping in stream_mappings():
        if mapping.table != "AgentsTable":
            continue
        passed = [r for r in records if accepted(mapping.filters, r)]
        figures[mapping.function] = len(passed) / checks
        if mapping.function == "PublishStatusFunction" and passed:
            env = tpl.function_environment("PublishStatusFunction", env_refs)
            os.environ.update({k: v for k, v in env.items() if not k.startswith("POWERTOOLS_")})
            boto3.client("events").create_event_bus(Name=env["EVENT_BUS_NAME"])
            from functions.publish_status import app

            context = LambdaContext("PublishStatusFunction")
            app.lambda_handler({"Records": passed[:1]}, context)  # warm-up
            seconds = []
            for record in passed:
                started = time.perf_counter()
                outcome = app.lambda_handler({"Records": [record]}, context)
                seconds.append(time.perf_counter() - started)
                assert not outcome["batchItemFailures"], outcome
            figures["publish_ms_p50"] = statistics.median(seconds) * 1000
            figures["publish_ms_max"] = max(seconds) * 1000
    return figures


def _person(sim: Any) -> Any:
    """Someone signing in at the simulator's pages (the tests' helper: what a browser does)."""
    from tests.m365_fixtures import Person

    return Person(sim)


def print_checks(f: CheckFigures) -> None:
    print("\nRequests per healthy check (the simulators' request records) and AWS calls (counted)")
    for auth, x in f.exchange.items():
        print(
            f"  Exchange {auth:6} ({x['mailbox']}): {x['requests']} HTTP requests {x['operations']}, "
            f"password sent {x['password_sent']}x; {x['seconds'] * 1000:.0f} ms; AWS {dict(x['calls'])}; "
            f"{x['rru']:.1f} RRU, WRU {x['wru']}"
        )
    for phase, x in f.m365.items():
        print(
            f"  Microsoft 365 {phase:6}: {len(x['requests'])} HTTP requests {x['requests']}; verdict {x['verdict']}; "
            f"{x['seconds'] * 1000:.0f} ms; AWS {dict(x['calls'])}; {x['rru']:.1f} RRU, WRU {x['wru']}"
        )
    t = f.throughput
    print(
        f"\nChecks through the queue: {t['checks']} Exchange checks, {t['concurrency']} workers (CheckConcurrency's "
        f"default) taking batches of 5, one process on this machine: {t['per_second']:.1f} checks/s "
        f"({t['wall']:.1f} s wall, {t['cpu']:.1f} s CPU of this process); a check p50 {t['p50'] * 1000:.0f} ms, "
        f"p95 {t['p95'] * 1000:.0f} ms (the checker's thread: {t['cpu_p50'] * 1000:.0f} ms CPU); verdicts "
        f"{t['verdicts']}; {t['ews_requests']} EWS requests"
    )
    print(f"Agents-table stream records per check, and what each mapping's filter lets through: {f.streams}")


# ---- 4. cost ------------------------------------------------------------------------------------------
POLLERS = 5  # Lambda's SQS event source long-polls with at least 5 pollers (20 s waits), mailboxes or not
POLLER_RECEIVES_PER_MONTH = POLLERS * 3 * 60 * 24 * 30


def cost_rows(
    d: DispatchFigures, c: CheckFigures, check_seconds: float, memory_gb: float = 1.0
) -> list[tuple[str, str, float]]:
    """Per connected mailbox per month, healthy, 4 checks a day; the dispatcher's and the pollers' fixed
    work shared by the dispatcher bench's agents."""
    ex = c.exchange.get("NTLM") or next(iter(c.exchange.values()))
    n, agents = CHECKS_PER_MONTH, d.agents
    lease_wru = sum(d.lease_wru.values()) / max(d.leases, 1)
    result_wru = sum(d.check_wru.values()) / max(d.checks, 1)
    agent_rru = d.check_rru / max(d.checks, 1)  # the agent's item, at the bench's item size
    secret_rru = ex["credentials_rru"]
    dispatch_rru = statistics.median(d.rru) * DISPATCHES_PER_MONTH / agents
    kms = sum(v for k, v in ex["calls"].items() if k.startswith("kms:"))
    dispatch_seconds = statistics.median(d.seconds)
    publish = 2 * c.streams.get("PublishStatusFunction", 0.0)  # two agent writes: the lease, the result
    publish_seconds = max(c.streams.get("publish_ms_p50", 0.0) / 1000, 0.001)
    gbs = LAMBDA_ARM_USD_PER_GB_SECOND
    return [
        (
            f"Lambda CheckMailbox: a request + {memory_gb * 1024:.0f} MB x {check_seconds:.2f} s",
            "1",
            n * (LAMBDA_USD_PER_REQUEST + memory_gb * check_seconds * gbs),
        ),
        (
            f"Lambda PublishStatus: one invocation per agent write (256 MB x {publish_seconds * 1000:.0f} ms)",
            f"{publish:.1f}",
            n * publish * (LAMBDA_USD_PER_REQUEST + 0.25 * publish_seconds * gbs),
        ),
        (
            f"Lambda DispatchChecks: every 5 min, 512 MB x {dispatch_seconds:.1f} s, / {agents} agents",
            "",
            DISPATCHES_PER_MONTH * (LAMBDA_USD_PER_REQUEST + 0.5 * dispatch_seconds * gbs) / agents,
        ),
        ("KMS: Decrypt of the sealed password", f"{kms}", n * kms * KMS_USD_PER_REQUEST),
        (
            f"DynamoDB writes: lease {lease_wru:.0f} + result {result_wru:.0f} WRU (table, ByStatus, ByCheckDue)",
            f"{lease_wru + result_wru:.0f}",
            n * (lease_wru + result_wru) * DDB_ON_DEMAND_USD_PER_WRU,
        ),
        (
            f"DynamoDB reads: agent {agent_rru:.0f} + secret {secret_rru:.0f} RRU; Query share",
            f"{agent_rru + secret_rru:.0f}",
            (n * (agent_rru + secret_rru) + dispatch_rru) * DDB_ON_DEMAND_USD_PER_RRU,
        ),
        (
            f"SQS: send (10 a batch) + delete; {POLLERS} pollers' receives / {agents} agents",
            "1.1",
            (n * 1.1 + POLLER_RECEIVES_PER_MONTH / agents) * SQS_USD_PER_REQUEST,
        ),
        ("Schedule: an EventBridge scheduled rule (free; Scheduler: $1 per million)", "", 0.0),
    ]


def print_cost(d: DispatchFigures, c: CheckFigures, check_seconds: float) -> None:
    print(
        f"\nCost per connected mailbox per month, healthy Exchange, {CHECKS_PER_MONTH} checks (4 a day), list prices "
        f"as of {PRICES_AS_OF} (us-east-1, arm64, on-demand); agent items of {d.item_bytes} bytes"
    )
    rows = cost_rows(d, c, check_seconds)
    print(f"{'item':92} {'per check':>9} {'USD/month':>11}")
    for item, per_check, usd in rows:
        print(f"{item:92} {per_check:>9} {usd:11.6f}")
    total = sum(r[2] for r in rows)
    print(f"{'total':92} {'':>9} {total:11.6f}   (goal 0.002)")
    print("Sensitivity (total USD/month):")
    for seconds in (0.25, 0.5, 1.0):
        for memory in (1.0, 0.5):
            figure = sum(r[2] for r in cost_rows(d, c, seconds, memory))
            print(f"  check {seconds:.2f} s at {memory * 1024:.0f} MB: {figure:.6f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--agents", type=int, default=10_000, help="connected agents for the dispatcher")
    parser.add_argument("--checks", type=int, default=200, help="Exchange checks through the queue")
    parser.add_argument(
        "--hours", type=float, default=1.0, help="dispatches run under moto (at most 6 h + 5 min)"
    )
    parser.add_argument("--quick", action="store_true", help="1,000 agents, 50 checks")
    parser.add_argument(
        "--check-seconds",
        type=float,
        default=0.5,
        help="the Exchange check's duration on Lambda for the cost (a real server's round trips)",
    )
    args = parser.parse_args(argv)
    os.environ.update(BENCH_ENVIRONMENT)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)
    if args.quick:
        args.agents, args.checks = 1000, 50
    silence_metrics()
    checks = bench_checks(args.checks)
    print_checks(checks)
    dispatch = bench_dispatcher(args.agents, args.hours)
    print_dispatcher(dispatch)
    print_cost(dispatch, checks, args.check_seconds)


if __name__ == "__main__":
    main()
