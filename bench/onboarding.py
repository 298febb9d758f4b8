"""Onboarding throughput and cost: N people onboard their mailboxes at once against the local stack.

Each onboarding is what a person does: the admin adds an agent (POST /agents), the invite email arrives
(/_local/emails), the owner opens the link, posts the connect form, follows the status page until the
verdict, and sends the advanced settings when asked. Every onboarding runs in its own tenant, cycling over
the simulated Exchange scenarios (autodiscover, manual settings, failures; the slow ones only in the full
run). Reported: throughput and per-onboarding latency, a correctness check (none stuck, none lost, exactly
one invite email each, verdicts as expected), and what one onboarding costs on AWS: Lambda requests and
GB-seconds, Step Functions state transitions, DynamoDB request units, SES emails, Secrets Manager calls.

The local stack runs each function as ONE warm instance (one invocation at a time per function), and
moto stands in for AWS on the same 2 cores: throughput here is a floor, bounded by that, not by AWS.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import math
import os
import re
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from devstack.exchange_sim.scenarios import SCENARIOS_BY_NAME, Scenario

# ---- AWS on-demand list prices, us-east-1, arm64 -----------------------------------------------------
# Source: the aws.amazon.com/<service>/pricing pages as of 2025-01 (DynamoDB on-demand after the
# November 2024 price cut). Not re-checked from this (offline) machine.
PRICES_AS_OF = "2025-01"
LAMBDA_USD_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_ARM_USD_PER_GB_SECOND = 0.0000133334
SFN_STANDARD_USD_PER_TRANSITION = 0.025 / 1_000
DDB_ON_DEMAND_USD_PER_WRU = 0.625 / 1_000_000
DDB_ON_DEMAND_USD_PER_RRU = 0.125 / 1_000_000
SES_USD_PER_EMAIL = 0.10 / 1_000
SECRETS_USD_PER_SECRET_MONTH = 0.40  # what a Secrets Manager secret per mailbox cost (before KMS sealing)
SECRETS_USD_PER_API_CALL = 0.05 / 10_000
KMS_USD_PER_REQUEST = 0.03 / 10_000
KMS_USD_PER_KEY_MONTH = 1.00  # the one customer-managed key of the whole service, not per mailbox
DDB_USD_PER_GB_MONTH = 0.25  # DynamoDB Standard table storage
DDB_ITEM_OVERHEAD_BYTES = 100  # DynamoDB bills 100 bytes of index overhead per item
HTTP_API_USD_PER_REQUEST = 1.00 / 1_000_000  # API Gateway HTTP API, first 300 million a month

# ---- The onboardings -------------------------------------------------------------------------------
AUTODISCOVER = (
    "autodiscover_domain",
    "autodiscover_subdomain",
    "autodiscover_http_redirect",
    "autodiscover_srv",
)
MANUAL = ("manual_domain_user", "manual_upn")  # first POST without server -> needs_settings -> settings
FAILURES = (
    "wrong_password",
    "locked_account",
    "bearer_only",
    # Exchange Online reached by autodiscover (a typed outlook.office365.com never gets this far: the connect
    # page refuses the password at once and offers "Sign in with Microsoft", tests/functions cover that)
    "redirect_to_exchange_online",
    "wrong_certificate",
    "unknown_mailbox",
    "access_denied",
    "connection_refused",
)
SLOW = ("server_never_answers", "silent_dns")  # they take the timeout budget: full run only
FINAL = ("verified", "failed")
STATUS_ROUTE = "GET /connect/{token}/status"
_NONCE = re.compile(r'name="nonce"\s+value="([^"]+)"')


def scenario_cycle(quick: bool) -> list[Scenario]:
    """Every kind early in the cycle (a short run still sees each), the slow ones second so they overlap."""
    order: list[str] = []
    failures = list(FAILURES)
    for i, name in enumerate(AUTODISCOVER):
        order += [name, MANUAL[i % len(MANUAL)], failures.pop(0)]
        if i == 0 and not quick:
            order += list(SLOW)
    order += failures
    return [SCENARIOS_BY_NAME[name] for name in order]


def expected(scenario: Scenario) -> tuple[str, str | None]:
    return ("verified", None) if scenario.expect_verify == "ok" else ("failed", scenario.expect_verify)


# ---- Metering: what our handlers did, measured in this process ------------------------------------------
_current = threading.local()


def _size(value: Any) -> int:
    """Bytes of a DynamoDB item (low-level format) as DynamoDB bills them, roughly: names plus values."""
    if isinstance(value, dict) and all(isinstance(v, dict) and len(v) == 1 for v in value.values()):
        return sum(len(str(name).encode()) + _value_size(v) for name, v in value.items())
    return len(json.dumps(value, default=str))


def _value_size(typed: dict[str, Any]) -> int:
    ((kind, value),) = typed.items()
    if kind == "S":
        return len(str(value).encode())
    if kind == "N":
        return len(str(value)) // 2 + 2
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(str(k).encode()) + 1 + _value_size(v) for k, v in value.items())
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in value)
    return len(json.dumps(value, default=str))


def _read_units(operation: str, params: dict[str, Any], response: dict[str, Any]) -> float:
    """Strongly consistent: 1 RRU per 4 KB read (GetItem: per item; Query: summed); eventual: half."""
    factor = 1.0 if params.get("ConsistentRead") else 0.5
    if operation == "GetItem":
        return factor * max(1, math.ceil(_size(response.get("Item", {})) / 4096))
    if operation in ("Query", "Scan"):
        return factor * max(1, math.ceil(sum(_size(i) for i in response.get("Items", [])) / 4096))
    if operation == "TransactGetItems":
        return 2.0 * max(1, len(params.get("TransactItems", [])))
    if operation == "BatchGetItem":
        return factor * sum(len(v.get("Keys", [])) for v in params.get("RequestItems", {}).values())
    return 0.0


def _is_agent(key: dict[str, Any] | None) -> bool:
    return str((key or {}).get("sk", {}).get("S", "")).startswith("AGENT#")


def _write_units(operation: str, params: dict[str, Any]) -> tuple[float, float]:
    """(table WRU, ByStatus index WRU). 1 WRU per 1 KB written (Put: the item's size; Update/Delete: 1,
    items assumed under 1 KB); transactions 2 per item. The index (projection ALL) holds the agent items:
    any write to one is an index write too, and 2 when its status (gsi1pk) changes (delete + put)."""

    def one(op: str, body: dict[str, Any]) -> tuple[float, float]:
        if op in ("Put", "PutItem"):
            item = body.get("Item", {})
            units = max(1, math.ceil(_size(item) / 1024))
            return units, (units if _is_agent(item) else 0)
        if op in ("Update", "UpdateItem"):
            index = 0.0
            if _is_agent(body.get("Key")):
                index = 2.0 if "gsi1pk" in _size_text(body) else 1.0
            return 1.0, index
        if op in ("Delete", "DeleteItem"):
            return 1.0, (1.0 if _is_agent(body.get("Key")) else 0.0)
        return 0.0, 0.0  # ConditionCheck: 1 WRU in a transaction, counted below

    if operation == "TransactWriteItems":
        table = index = 0.0
        for entry in params.get("TransactItems", []):
            ((op, body),) = entry.items()
            units, idx = one(op, body)
            table += 2 * max(1.0, units)
            index += idx
        return table, index
    if operation == "BatchWriteItem":
        table = index = 0.0
        for requests_ in params.get("RequestItems", {}).values():
            for entry in requests_:
                ((op, body),) = entry.items()
                units, idx = one("PutItem" if op == "PutRequest" else "DeleteItem", body)
                table, index = table + units, index + idx
        return table, index
    return one(operation, params)


def _size_text(body: dict[str, Any]) -> str:
    return json.dumps(body, default=str)


@dataclass
class Meter:
    """Lambda invocations and durations per function, and the AWS calls our handlers made."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    durations: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (label, service, operation)
    rru: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # by label
    wru: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    index_wru: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    paused: bool = False  # the bench's own checks afterwards: not part of the onboardings

    def timed(self, name: str, handler: Callable[[dict[str, Any], Any], Any]) -> Callable[..., Any]:
        def run(event: dict[str, Any], context: Any) -> Any:
            if self.paused:
                return handler(event, context)
            label = name
            if event.get("routeKey") == STATUS_ROUTE:
                label = f"{name} (status polls)"
            _current.label = label
            started = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                elapsed = time.perf_counter() - started
                _current.label = None
                with self.lock:
                    self.durations[label].append(elapsed)

        return run

    def record(
        self, label: str, service: str, operation: str, params: dict[str, Any], response: dict[str, Any]
    ) -> None:
        with self.lock:
            self.calls[(label, service, operation)] += 1
            if service == "dynamodb":
                self.rru[label] += _read_units(operation, params, response)
                table, index = _write_units(operation, params)
                self.wru[label] += table
                self.index_wru[label] += index


@contextlib.contextmanager
def metered(runners: dict[str, Any], meter: Meter) -> Iterator[None]:
    """Time every handler (inside the runner's lock: the invocation, not the queue before it) and count
    the AWS API calls made while a handler runs (the bench's own calls and the pollers' are not)."""
    from botocore.client import BaseClient

    for logical_id, runner in runners.items():
        handler = getattr(importlib.import_module(runner.module), runner.handler_name)
        runner._handler = meter.timed(logical_id, handler)
    original = BaseClient._make_api_call

    def counting(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        label = getattr(_current, "label", None)
        if label is None:
            return original(self, operation_name, api_params)
        service = self.meta.service_model.service_name
        response: dict[str, Any] = {}
        try:
            response = original(self, operation_name, api_params)
            return response
        finally:
            meter.record(label, service, operation_name, api_params, response)

    BaseClient._make_api_call = counting
    try:
        yield
    finally:
        BaseClient._make_api_call = original


# ---- One person onboarding ---------------------------------------------------------------------------
@dataclass
class Onboarding:
    index: int
    tenant: str
    scenario: Scenario
    started: float = 0.0
    emailed: float | None = None  # invite email seen
    submitted: float | None = None  # connect form posted
    finished: float | None = None  # final verdict seen
    status: str = "not started"
    reason: str | None = None
    settings_rounds: int = 0
    error: str | None = None
    glitches: list[str] = field(default_factory=list)  # unexpected answers on the way

    @property
    def total(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    @property
    def ok(self) -> bool:
        return (self.status, self.reason) == expected(self.scenario)


class Inbox:
    """The local emails, fetched for all clients at once (at most one fetch per `every` seconds)."""

    def __init__(self, base_url: str, every: float = 0.3) -> None:
        self.base_url = base_url
        self.every = every
        self._lock = threading.Lock()
        self._fetched = 0.0
        self._emails: list[dict[str, Any]] = []

    def emails(self) -> list[dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._fetched >= self.every:
                response = requests.get(f"{self.base_url}/_local/emails", timeout=30)
                response.raise_for_status()
                self._emails = response.json()
                self._fetched = time.monotonic()
            return self._emails

    def invites_for(self, email: str, tenant: str, emails: list[dict[str, Any]] | None = None) -> list[str]:
        """Links of the invites to `email` from `tenant` (each tenant's agents are added with the tenant id
        as their inviterName, which starts the subject: '<tenant> invites you to connect your mailbox')."""
        return [
            str(e["link"])
            for e in (self.emails() if emails is None else emails)
            if e["to"] == email and e["subject"].startswith(f"{tenant} invites ")
        ]


def _nonce(html: str) -> str:
    found = _NONCE.search(html)
    if not found:
        raise RuntimeError("no nonce in the page")
    return found.group(1)


def onboard(job: Onboarding, base_url: str, inbox: Inbox, deadline_s: float, poll_s: float) -> Onboarding:
    from devstack import tokens

    scenario = job.scenario
    http = requests.Session()
    deadline = time.monotonic() + deadline_s
    job.started = time.monotonic()
    try:
        auth = {"Authorization": f"Bearer {tokens.mint(job.tenant)}"}
        # Each tenant invites under its own name, which starts the subject: how its invite is told apart.
        body = {
            "name": f"Agent {job.index}",
            "email": scenario.email,
            "type": "ms_exchange",
            "inviterName": job.tenant,
        }
        created = http.post(f"{base_url}/agents", json=body, headers=auth, timeout=60)
        if created.status_code != 201:
            raise RuntimeError(f"POST /agents -> {created.status_code} {created.text[:200]}")
        job.status = "invite_pending"
        link = ""
        while not link:
            links = inbox.invites_for(scenario.email, job.tenant)
            if links:
                link = links[0]
                break
            if time.monotonic() > deadline:
                raise TimeoutError("no invite email")
            time.sleep(poll_s / 2)
        job.emailed = time.monotonic()
        job.status = "invited"
        page = http.get(link, timeout=60)
        page.raise_for_status()
        manual = scenario.name in MANUAL
        form = {"email": scenario.email, "password": scenario.password, "nonce": _nonce(page.text)}
        if not manual:
            form |= {k: v for k, v in (("username", scenario.username), ("server", scenario.server)) if v}
        origin = {"Origin": base_url}
        posted = http.post(link, data=form, headers=origin, allow_redirects=False, timeout=60)
        if posted.status_code != 303:
            raise RuntimeError(f"POST connect -> {posted.status_code} {posted.text[:200]}")
        job.submitted = time.monotonic()
        status_url = f"{link}/status"
        while True:
            answer = http.get(status_url, headers={"Accept": "application/json"}, timeout=60)
            try:
                state = answer.json()
                job.status, job.reason = state["status"], state.get("reason")
            except (ValueError, KeyError):  # the page refreshes; keep polling, report it
                job.glitches.append(f"status poll -> HTTP {answer.status_code}: {answer.text[:300]!r}")
                state = {}
            if state and job.status in FINAL:
                job.finished = time.monotonic()
                return job
            if state and job.status == "needs_settings" and job.settings_rounds < 3:
                job.settings_rounds += 1
                html = http.get(status_url, timeout=60).text
                settings = {"server": scenario.server or "", "nonce": _nonce(html)}
                if scenario.username:
                    settings["username"] = scenario.username
                sent = http.post(
                    f"{link}/settings", data=settings, headers=origin, allow_redirects=False, timeout=60
                )
                if sent.status_code != 303:
                    raise RuntimeError(f"POST settings -> {sent.status_code} {sent.text[:200]}")
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"stuck in {job.status}")
            time.sleep(poll_s)
    except Exception as error:
        job.error = f"{type(error).__name__}: {error}"
    finally:
        http.close()
    return job


# ---- The run -----------------------------------------------------------------------------------------
@dataclass
class Result:
    jobs: list[Onboarding]
    wall: float
    meter: Meter
    emails: list[dict[str, Any]]
    transitions: int
    executions: Counter[str]
    secrets_left: Counter[str]  # sealed secrets kept at the end, by the agent's final status
    secret_bytes: list[int]  # billed storage bytes of each sealed secret kept
    item_sizes: list[int]  # bytes of each agent item at the end
    memory_mb: dict[str, int]
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def memory_sizes() -> dict[str, int]:
    from devstack import template as tpl

    template = tpl.load_template()
    default = int(template.get("Globals", {}).get("Function", {}).get("MemorySize", 128))
    return {
        logical_id: int(body["Properties"].get("MemorySize", default))
        for logical_id, body in tpl.resources(template, "AWS::Serverless::Function").items()
    }


def state_transitions(moto_url: str) -> tuple[int, Counter[str]]:
    """`StateEntered` events of every execution (what Standard workflows bill), and executions by status."""
    import boto3

    sfn = boto3.client("stepfunctions", endpoint_url=moto_url, region_name="us-east-1")
    entered = 0
    statuses: Counter[str] = Counter()
    for machine in sfn.list_state_machines()["stateMachines"]:
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine["stateMachineArn"]):
            for execution in page["executions"]:
                statuses[execution["status"]] += 1
                kwargs: dict[str, Any] = {"executionArn": execution["executionArn"], "maxResults": 1000}
                while True:
                    history = sfn.get_execution_history(**kwargs)
                    entered += sum(e["type"].endswith("StateEntered") for e in history["events"])
                    if not history.get("nextToken"):
                        break
                    kwargs["nextToken"] = history["nextToken"]
    return entered, statuses


def agent_item_sizes(moto_url: str, table: str) -> list[int]:
    """Sizes of the agent items at the end: a write costs 1 WRU per KB of the larger of old and new item."""
    import boto3

    ddb = boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1")
    pages = ddb.get_paginator("scan").paginate(TableName=table)
    return [_size(item) for page in pages for item in page["Items"] if _is_agent(item)]


def secrets_kept(moto_url: str, table: str, jobs: list[Onboarding]) -> tuple[Counter[str], list[int]]:
    """Sealed mailbox secrets still stored at the end (items `TENANT#<tenant>`), by the agent's final
    status, and the billed storage size of each (item bytes + DynamoDB's 100 bytes per item)."""
    import boto3

    ddb = boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1")
    items = [item for page in ddb.get_paginator("scan").paginate(TableName=table) for item in page["Items"]]
    status = {job.tenant: job.status for job in jobs}
    kept: Counter[str] = Counter()
    for item in items:
        kept[status.get(item["pk"]["S"].removeprefix("TENANT#"), "other")] += 1
    return kept, [_size(item) + DDB_ITEM_OVERHEAD_BYTES for item in items]


def dashboard_problems(base_url: str, jobs: list[Onboarding]) -> list[str]:
    """None lost: each tenant's dashboard (GET /agents) lists its one agent, in the status the owner saw.
    One request at a time (see tests/bench: concurrent requests to two functions can mix events)."""
    from devstack import tokens

    problems = []
    for job in jobs:
        auth = {"Authorization": f"Bearer {tokens.mint(job.tenant)}"}
        answer = requests.get(f"{base_url}/agents", headers=auth, timeout=30)
        items = answer.json().get("items", []) if answer.ok else []
        statuses = [item.get("status") for item in items]
        if statuses != [job.status]:
            problems.append(
                f"#{job.index} {job.scenario.name}: dashboard lists {statuses}, owner saw {job.status}"
            )
    return problems


def check(jobs: list[Onboarding], inbox: Inbox, emails: list[dict[str, Any]]) -> list[str]:
    problems = []
    for job in jobs:
        what = f"#{job.index} {job.scenario.name} ({job.tenant})"
        if job.error:
            problems.append(f"{what}: {job.error} (last status {job.status}, reason {job.reason})")
        if not job.error and not job.ok:
            want = expected(job.scenario)
            problems.append(f"{what}: got {job.status}/{job.reason}, expected {want[0]}/{want[1]}")
        invites = inbox.invites_for(job.scenario.email, job.tenant, emails)
        if len(invites) != 1:
            problems.append(f"{what}: {len(invites)} invite emails, expected exactly 1")
    matched = sum(len(inbox.invites_for(j.scenario.email, j.tenant, emails)) for j in jobs)
    if matched != len(emails):
        problems.append(f"{len(emails) - matched} emails match no onboarding")
    return problems


def run(
    n: int, concurrency: int, quick: bool, deadline_s: float = 120.0, poll_s: float = 1.0, quiet: bool = True
) -> Result:
    from devstack.stack import LocalStack, free_port

    cycle = scenario_cycle(quick)
    run_id = os.urandom(2).hex()
    jobs = [Onboarding(i, f"bench-{run_id}-{i:03d}", cycle[i % len(cycle)]) for i in range(n)]
    meter = Meter()
    quiet_out = io.StringIO()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    stack = LocalStack(gateway_port=free_port(), moto_port=free_port())
    # The handlers log JSON to stdout and the stack prints each email: kept out of the tables.
    with contextlib.redirect_stdout(quiet_out) if quiet else contextlib.nullcontext():
        stack.start()
    try:
        with (
            contextlib.redirect_stdout(quiet_out) if quiet else contextlib.nullcontext(),
            metered(stack.runners, meter),
        ):
            inbox = Inbox(stack.base_url)
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="owner") as pool:
                list(pool.map(lambda j: onboard(j, stack.base_url, inbox, deadline_s, poll_s), jobs))
            wall = time.monotonic() - started
            time.sleep(2.0)  # a late duplicate invite would show up here
            emails = list(requests.get(f"{stack.base_url}/_local/emails", timeout=30).json())
            meter.paused = True
            problems = check(jobs, inbox, emails) + dashboard_problems(stack.base_url, jobs)
            transitions, executions = state_transitions(stack.moto_url)
            secrets_left, secret_bytes = secrets_kept(
                stack.moto_url, stack.physical_names["CredentialsTable"], jobs
            )
            item_sizes = agent_item_sizes(stack.moto_url, stack.physical_names["AgentsTable"])
    finally:
        with contextlib.redirect_stdout(quiet_out) if quiet else contextlib.nullcontext():
            stack.stop()
    for status, count in executions.items():
        if status == "RUNNING":
            problems.append(f"{count} Step Functions executions still RUNNING at the end")
    return Result(
        jobs,
        wall,
        meter,
        emails,
        transitions,
        executions,
        secrets_left,
        secret_bytes,
        item_sizes,
        memory_sizes(),
        problems,
    )


# ---- Reporting ---------------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def print_throughput(result: Result, concurrency: int) -> None:
    jobs = result.jobs
    done = [j for j in jobs if j.finished is not None]
    print(
        f"\nOnboarding throughput: {len(jobs)} onboardings, {concurrency} concurrent owners, local stack "
        "(ONE warm instance per function, handlers, moto and clients in one process on 2 cores: "
        "a floor, not AWS's throughput)"
    )
    print(f"wall time {result.wall:.1f} s, {len(done) / result.wall * 60:.1f} onboardings per minute")
    print(f"{'seconds':32} {'n':>4} {'p50':>7} {'p95':>7} {'max':>7}")
    phases: list[tuple[str, list[float]]] = [
        ("POST /agents -> invite email", [j.emailed - j.started for j in jobs if j.emailed]),
        ("form posted -> verdict", [j.finished - j.submitted for j in jobs if j.finished and j.submitted]),
        ("POST /agents -> verdict (total)", [j.total for j in done if j.total is not None]),
    ]
    for name, values in phases:
        print(
            f"{name:32} {len(values):4d} {_pct(values, 0.5):7.2f} {_pct(values, 0.95):7.2f} {_pct(values, 1):7.2f}"
        )
    print(
        f"\n{'function (one warm instance)':44} {'invocations':>11} {'p50 ms':>8} {'max ms':>8} {'busy %':>7}"
    )
    for label, durations in sorted(result.meter.durations.items()):
        busy = sum(durations) / result.wall * 100
        p50, top = _pct(durations, 0.5) * 1000, max(durations) * 1000
        print(f"{label:44} {len(durations):11d} {p50:8.0f} {top:8.0f} {busy:7.0f}")
    print(f"\n{'scenario':28} {'n':>3} {'verdict (expected)':62} {'median s':>9}")
    by_scenario: dict[str, list[Onboarding]] = defaultdict(list)
    for job in jobs:
        by_scenario[job.scenario.name].append(job)
    for name, group in by_scenario.items():
        want = "/".join(str(x) for x in expected(group[0].scenario) if x)
        got = Counter("/".join(str(x) for x in (j.status, j.reason) if x) for j in group)
        shown = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in got.items())
        totals = [j.total for j in group if j.total is not None]
        median = statistics.median(totals) if totals else float("nan")
        mark = "" if all(j.ok and not j.error for j in group) else "  <-- MISMATCH"
        print(f"{name:28} {len(group):3d} {shown + ' (' + want + ')':62} {median:9.2f}{mark}")


def print_check(result: Result) -> None:
    jobs = result.jobs
    stuck = [j for j in jobs if j.finished is None]
    wrong = [j for j in jobs if j.finished is not None and not j.ok]
    print("\nCorrectness")
    print(f"  final verdict within the deadline : {len(jobs) - len(stuck)}/{len(jobs)}")
    print(f"  verdict as expected               : {len(jobs) - len(stuck) - len(wrong)}/{len(jobs)}")
    one_invite = len(jobs) - sum("invite emails, expected exactly 1" in p for p in result.problems)
    listed = len(jobs) - sum("dashboard lists" in p for p in result.problems)
    print(
        f"  exactly one invite email          : {one_invite}/{len(jobs)} ({len(result.emails)} emails sent)"
    )
    print(f"  dashboard lists it, same status   : {listed}/{len(jobs)}")
    print(f"  Step Functions executions         : {dict(result.executions)}")
    print(f"  CHECK {'PASSED' if result.passed else 'FAILED'}")
    for problem in result.problems:
        print(f"    - {problem}")
    kinds: dict[str, list[int]] = defaultdict(list)
    for job in jobs:
        for glitch in job.glitches:
            html = "HTTP 200: '<!doctype html>" in glitch
            kinds["JSON status poll answered with the HTML page" if html else glitch[:160]].append(job.index)
    if kinds:
        print("  Unexpected answers on the way (polled again; not verdicts):")
    for kind, indexes in kinds.items():
        print(f"    - {kind}: {len(indexes)}x, onboardings {sorted(set(indexes))}")
        if kind.startswith("JSON status poll"):
            print(
                "      (local stack only: its functions share one process, and Powertools keeps the current "
                "event on a class attribute, BaseRouter.current_event, which AddAgent's requests overwrite)"
            )


POLLS = "status polls"


def cost_rows(result: Result) -> list[tuple[str, float, float]]:
    """(item, count per onboarding, USD per onboarding). Status polls (the bench's choice of 1 s; the page
    refreshes every 3 s) are shown apart from the rest of the flow."""
    n = len(result.jobs)
    meter = result.meter
    rows: list[tuple[str, float, float]] = []

    def add(item: str, total: float, unit_usd: float) -> None:
        rows.append((item, total / n, total / n * unit_usd))

    for label in sorted(meter.durations):
        durations = meter.durations[label]
        gb = result.memory_mb.get(label.split(" ")[0], 128) / 1024
        billed_s = sum(math.ceil(d * 1000) / 1000 for d in durations)
        add(f"Lambda requests: {label}", len(durations), LAMBDA_USD_PER_REQUEST)
        add(f"Lambda GB-s: {label} ({gb * 1024:.0f} MB)", billed_s * gb, LAMBDA_ARM_USD_PER_GB_SECOND)
    api = Counter[str]()
    for label, durations in meter.durations.items():
        if label.startswith(("AddAgent", "AuthCallback")):
            api[POLLS if POLLS in label else "flow"] += len(durations)
    add("HTTP API requests", api["flow"], HTTP_API_USD_PER_REQUEST)
    add(f"HTTP API requests ({POLLS})", api[POLLS], HTTP_API_USD_PER_REQUEST)
    add("Step Functions state transitions", result.transitions, SFN_STANDARD_USD_PER_TRANSITION)
    for name, units, price in (
        ("DynamoDB WRU (table)", meter.wru, DDB_ON_DEMAND_USD_PER_WRU),
        ("DynamoDB WRU (ByStatus index)", meter.index_wru, DDB_ON_DEMAND_USD_PER_WRU),
        ("DynamoDB RRU", meter.rru, DDB_ON_DEMAND_USD_PER_RRU),
    ):
        polls = sum(v for k, v in units.items() if POLLS in k)
        add(name, sum(units.values()) - polls, price)
        if polls:
            add(f"{name} ({POLLS})", polls, price)
    ses = sum(
        c for (_, svc, op), c in meter.calls.items() if svc in ("ses", "sesv2") and op.startswith("Send")
    )
    add("SES emails", ses, SES_USD_PER_EMAIL)
    secrets_calls = sum(c for (_, svc, _), c in meter.calls.items() if svc == "secretsmanager")
    add("Secrets Manager API calls (CSRF key, cached)", secrets_calls, SECRETS_USD_PER_API_CALL)
    kms_calls = sum(c for (_, svc, _), c in meter.calls.items() if svc == "kms")
    add("KMS API calls (seal, unseal)", kms_calls, KMS_USD_PER_REQUEST)
    per_secret_gb = statistics.mean(result.secret_bytes or [0]) / 1e9
    for status, kept in sorted(result.secrets_left.items()):
        add(f"Secrets kept, {status} agents: GB-months", kept * per_secret_gb, DDB_USD_PER_GB_MONTH)
    return rows


def at_rest_per_mailbox_month(result: Result) -> float:
    """USD per verified mailbox per month for keeping its sealed password (the key's $1 is per service)."""
    return statistics.mean(result.secret_bytes or [0]) / 1e9 * DDB_USD_PER_GB_MONTH


def print_cost(result: Result) -> None:
    rows = cost_rows(result)
    n = len(result.jobs)
    print(f"\nCost per onboarding (AWS on-demand list prices, us-east-1, arm64, as of {PRICES_AS_OF})")
    print(f"{'item':56} {'per onboarding':>15} {'per 1,000 (count)':>18} {'USD per 1,000':>14}")
    for item, count, usd in rows:
        print(f"{item:56} {count:15.3f} {count * 1000:18.1f} {usd * 1000:14.4f}")
    monthly = sum(usd for item, _, usd in rows if item.startswith("Secrets kept"))
    polls = sum(usd for item, _, usd in rows if POLLS in item)
    once = sum(usd for _, _, usd in rows) - monthly - polls
    print(f"{'total once, without status polls':56} {'':15} {'':18} {once * 1000:14.4f}")
    print(f"{'status polls (bench: every 1 s)':56} {'':15} {'':18} {polls * 1000:14.4f}")
    print(
        f"{'every month after: the sealed passwords kept (DynamoDB)':56} {'':15} {'':18} {monthly * 1000:14.6f}"
    )
    bytes_kept = statistics.mean(result.secret_bytes or [0])
    print(
        f"At rest per mailbox-month: ${at_rest_per_mailbox_month(result):.9f} (a {bytes_kept:.0f}-byte sealed item; "
        f"was ${SECRETS_USD_PER_SECRET_MONTH:.2f} as a Secrets Manager secret), plus "
        f"${KMS_USD_PER_KEY_MONTH:.2f} a month for the service's one KMS key"
    )
    by_function: dict[str, list[str]] = defaultdict(list)
    for (label, svc, op), count in sorted(result.meter.calls.items()):
        by_function[label].append(f"{svc}.{op} {count / n:.2f}")
    sizes = result.item_sizes or [0]
    print(
        f"Agent items at the end: {statistics.mean(sizes):.0f} bytes on average, {max(sizes)} at most "
        f"({'under' if max(sizes) <= 1024 else 'OVER'} the 1 KB that 1 WRU writes)"
    )
    print("AWS API calls by our handlers, per onboarding:")
    for label, calls in sorted(by_function.items()):
        print(f"  {label}: {', '.join(calls)}")
    print(
        "Lambda durations: measured here (handlers against moto on loopback), billed rounded up to 1 ms. "
        "DynamoDB units: estimated from the calls (writes 1 WRU per KB written, Update/Delete 1, "
        "transactions 2 per item; strongly consistent reads 1 RRU per 4 KB, eventual half; agent items are "
        "also written to the ByStatus index, twice when the status changes). Stream reads by Lambda are "
        "free; CloudWatch Logs/metrics and X-Ray are not counted."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=None, help="onboardings (default 50, --quick 12)")
    parser.add_argument("--concurrency", type=int, default=10, help="concurrent owners (HTTP clients)")
    parser.add_argument("--quick", action="store_true", help="12 onboardings, without the slow scenarios")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds an onboarding may take")
    args = parser.parse_args(argv)
    n = args.n if args.n is not None else (12 if args.quick else 50)
    result = run(n, args.concurrency, args.quick, deadline_s=args.deadline)
    print_throughput(result, args.concurrency)
    print_check(result)
    print_cost(result)


if __name__ == "__main__":
    main()
