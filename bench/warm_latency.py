"""Warm latency of each API route: our handler beside a bare one that makes the same DynamoDB calls with
boto3 alone, both in-process.

Two passes, requests interleaved between the two sides:
1. against moto (in-process): moto's own work (47-50 ms for a transaction) dominates both sides, so this
   says little about our code;
2. over replayed AWS responses: the HTTP responses moto gave each side in pass 1 are recorded, then served
   again (--replays times each) at botocore's transport (`Endpoint._send`), so both sides still sign,
   serialize, send and parse, and only the network and the service are gone. Our overhead per request is ours minus bare, in CPU
   time of the calling thread (nothing waits here, and CPU time does not count other processes' turns).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import json
import logging
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack import template as tpl

# The dashboard API's environment as template.yaml gives it, for a deployment named `bench`.
os.environ.update(
    tpl.function_environment(
        "AddAgentFunction",
        {
            **tpl.parameter_defaults(),
            "Stage": "bench",
            "AgentsTable": "bench-agents",
            "CredentialsTable": "bench-credentials",
            "VerifyMailboxStateMachine": "arn:aws:states:us-east-1:123456789012:stateMachine:bench",
        },
    )
)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
    }
)
# The log level (the template's INFO) and metrics stay as deployed: our log line and EMF metric are work
# requests do on Lambda (both written into a buffer here: _log_into, _timed).
os.environ.pop("AWS_ENDPOINT_URL", None)

import warnings
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import boto3
from botocore.awsrequest import AWSResponse
from botocore.endpoint import Endpoint
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from bench import callgrind
from devstack.events import api_event
from devstack.runtime import LambdaContext

TABLE = "bench-agents"
# Over replayed responses nothing waits (no network, no service): CPU time of this thread is the cost,
# and unlike wall time it does not count the time other processes on a busy machine hold the CPU.
CPU = time.thread_time


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


@dataclass
class Recorded:
    target: str  # the operation (X-Amz-Target), checked on replay: both passes must make the same calls
    status: int
    headers: dict[str, str]
    body: bytes


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


class Tape:
    """Records the HTTP responses moto gives, then replays them at botocore's transport."""

    def __init__(self) -> None:
        self.recording: list[Recorded] | None = None
        self._replay: deque[Recorded] = deque()

    @contextlib.contextmanager
    def record(self, into: list[Recorded]) -> Iterator[None]:
        self.recording = into
        try:
            yield
        finally:
            self.recording = None

    @contextlib.contextmanager
    def replay(self, responses: list[Recorded]) -> Iterator[None]:
        self._replay = deque(responses)
        try:
            yield
        finally:
            if self._replay:
                raise AssertionError(f"{len(self._replay)} recorded responses were not asked for")

    def install(self) -> None:
        tape = self
        original = BotocoreStubber.__call__

        def recording_stubber(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            response = original(stubber, event_name, request, **kwargs)
            if response is not None and tape.recording is not None:
                target = request.headers.get("X-Amz-Target", b"")
                tape.recording.append(
                    Recorded(_text(target), response.status_code, dict(response.headers), response.content)
                )
            return response

        def replaying_send(endpoint: Any, request: Any) -> AWSResponse:
            if not tape._replay:
                raise AssertionError("a request beyond the recording (the handler made another call)")
            recorded = tape._replay.popleft()
            target = _text(request.headers.get("X-Amz-Target", b""))
            if target != recorded.target:
                raise AssertionError(f"replay expected {recorded.target}, the handler called {target}")
            return AWSResponse(request.url, recorded.status, recorded.headers, _Body(recorded.body))

        BotocoreStubber.__call__ = recording_stubber  # type: ignore[method-assign]
        Endpoint._send = replaying_send  # type: ignore[method-assign]  # reached only outside mock_aws


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bare_handlers(ddb: Any) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    """What a hand-written handler without framework or models would do: the same DynamoDB calls."""

    def create(event: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(event["body"])
        tenant = event["requestContext"]["authorizer"]["jwt"]["claims"]["custom:tenant_id"]
        agent_id = f"{time.time_ns():026d}"
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        agent = {  # the same attributes our repository stores, so both sides move the same bytes
            "pk": {"S": f"TENANT#{tenant}"},
            "sk": {"S": f"AGENT#{agent_id}"},
            "gsi1pk": {"S": f"TENANT#{tenant}#STATUS#invite_pending"},
            "gsi1sk": {"S": f"AGENT#{agent_id}"},
            "entity": {"S": "agent"},
            "agentId": {"S": agent_id},
            "tenantId": {"S": tenant},
            "name": {"S": body["name"]},
            "email": {"S": body["email"]},
            "type": {"S": body["type"]},
            "status": {"S": "invite_pending"},
            "createdAt": {"S": now},
            "updatedAt": {"S": now},
            "version": {"N": "1"},
            "inviteVersion": {"N": "1"},
            "inviteRequestedAt": {"S": now},
        }
        guard = {
            "pk": {"S": f"TENANT#{tenant}"},
            "sk": {"S": f"EMAIL#{body['email'].lower()}"},
            "agentId": {"S": agent_id},
            "entity": {"S": "email_guard"},
        }
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": guard,
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": agent,
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
        return {"statusCode": 201, "body": json.dumps({"agentId": agent_id, **body})}

    def list_(event: dict[str, Any]) -> dict[str, Any]:
        tenant = event["requestContext"]["authorizer"]["jwt"]["claims"]["custom:tenant_id"]
        items = ddb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            ExpressionAttributeValues={":pk": {"S": f"TENANT#{tenant}"}, ":p": {"S": "AGENT#"}},
            Limit=25,
            ConsistentRead=True,
        )["Items"]
        return {"statusCode": 200, "body": json.dumps({"items": items})}

    def get(event: dict[str, Any]) -> dict[str, Any]:
        tenant = event["requestContext"]["authorizer"]["jwt"]["claims"]["custom:tenant_id"]
        item = ddb.get_item(
            TableName=TABLE,
            Key={"pk": {"S": f"TENANT#{tenant}"}, "sk": {"S": f"AGENT#{event['pathParameters']['agentId']}"}},
            ConsistentRead=True,
        ).get("Item")
        return {"statusCode": 200 if item else 404, "body": json.dumps(item)}

    return {"POST /agents": create, "GET /agents": list_, "GET /agents/{agentId}": get}


def _log_into(sink: io.StringIO) -> None:
    """Our log lines go where the EMF metrics go (Powertools' handler holds the sys.stdout it was made with,
    which redirect_stdout does not replace): written as on Lambda, into a buffer instead of a terminal."""
    from onboarding.core.observability import logger

    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        raise TypeError(f"unexpected log handler {handler!r}")
    handler.setStream(sink)


def _timed(
    handler: Callable[[], Any], sink: io.StringIO, clock: Callable[[], float] = time.perf_counter
) -> float:
    with contextlib.redirect_stdout(sink):  # EMF metrics and logs: written, not shown
        started = clock()
        handler()
        return clock() - started


WARM_UP = 10  # replayed requests before counting: first-call work (clients, caches) is not warm latency
Rows = list[tuple[dict[str, Any], list[Recorded]]]


def _count_in_child(path: str, route: str, side: str) -> None:
    """Run under callgrind by `_instructions`: replay `side`'s recorded requests of `route`; only what runs
    inside functools.reduce is collected (--toggle-collect), so imports and warm-up are not counted."""
    rows: Rows = pickle.loads(Path(path).read_bytes())[(route, side)]  # noqa: S301 (our own temp file)
    tape = Tape()
    tape.install()
    sink = io.StringIO()
    context = LambdaContext("bench")
    from functions.add_agent import app

    _log_into(sink)
    bare = _bare_handlers(boto3.client("dynamodb"))[route]

    def one(row: tuple[dict[str, Any], list[Recorded]]) -> None:
        event, recorded = row
        with tape.replay(recorded), contextlib.redirect_stdout(sink):
            app.lambda_handler(event, context) if side == "ours" else bare(event)  # type: ignore[arg-type]

    for row in rows[:WARM_UP]:
        one(row)
    gc.collect()
    gc.freeze()  # a full collection of the start-up heap is not a request's work
    functools.reduce(lambda _, row: one(row), rows[WARM_UP:], None)


def _instructions(path: Path, route: str, side: str, count: int) -> int:
    """Instructions per request (valgrind's callgrind): the same on every run, whatever the machine's load."""
    command = [sys.executable, "-m", "bench.warm_latency", "--count-in-child", str(path), route, side]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    options = ("--collect-atstart=no", "--toggle-collect=functools_reduce")
    return callgrind.instructions(command, env, f"{route} ({side})", *options) // count


def main(argv: list[str] | None = None) -> None:
    warnings.filterwarnings("ignore", message="No application metrics")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="requests per route and side against moto")
    parser.add_argument(
        "--replays",
        type=int,
        default=5,
        help="times each recorded request is replayed (replays are cheap: more samples, steadier p50s)",
    )
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="also count instructions per request over N replayed requests per route and side (valgrind's "
        "callgrind; a few minutes)",
    )
    parser.add_argument("--count-in-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count_in_child:
        _count_in_child(*args.count_in_child)
        return
    if args.instructions and shutil.which("valgrind") is None:
        parser.error("valgrind not found (Debian: apt-get install valgrind)")
    if args.instructions + WARM_UP > args.requests:
        parser.error(f"--instructions counts at most --requests minus {WARM_UP} requests")
    tape = Tape()
    tape.install()
    sink = io.StringIO()
    context = LambdaContext("bench")
    moto_rows = []
    tapes: dict[str, tuple[list[list[Recorded]], list[list[Recorded]]]] = {}
    with mock_aws():
        ddb = boto3.client("dynamodb")
        tpl.create_tables(ddb, {"AgentsTable": TABLE, "CredentialsTable": "bench-credentials"})
        from functions.add_agent import app

        _log_into(sink)
        seed_body = {"name": "Seed", "email": "seed@contoso.com", "type": "ms_exchange"}
        seed = app.lambda_handler(api_event("POST", "/agents", body=seed_body), context)  # type: ignore[arg-type]
        bare = _bare_handlers(ddb)
        bare_seed = bare["POST /agents"](api_event("POST", "/agents", tenant="bare", body=seed_body))
        seed_ids = {
            "demo": json.loads(seed["body"])["agentId"],
            "bare": json.loads(bare_seed["body"])["agentId"],
        }
        counter = iter(range(10**9))

        def event_for(route: str, tenant: str) -> dict[str, Any]:
            """Ours and the bare handler work in separate tenants (partitions) of the same table."""
            if route == "POST /agents":
                n = next(counter)
                body = {"name": f"A{n}", "email": f"a{n}@contoso.com", "type": "ms_exchange"}
                return api_event("POST", "/agents", tenant=tenant, body=body)
            if route == "GET /agents":
                return api_event("GET", "/agents", tenant=tenant)
            agent_id = seed_ids[tenant]
            path = f"/agents/{agent_id}"
            return api_event(
                "GET", path, tenant=tenant, route="/agents/{agentId}", path_params={"agentId": agent_id}
            )

        for route, bare_handler in bare.items():
            ours: list[float] = []
            plain: list[float] = []
            ours_tape: list[list[Recorded]] = []
            bare_tape: list[list[Recorded]] = []
            for _ in range(args.requests):  # interleaved: noise hits both sides alike
                event = event_for(route, "demo")
                ours_tape.append([])
                with tape.record(ours_tape[-1]):
                    ours.append(_timed(lambda e=event: app.lambda_handler(e, context), sink))  # type: ignore[misc]
                event = event_for(route, "bare")
                bare_tape.append([])
                with tape.record(bare_tape[-1]):
                    plain.append(_timed(lambda e=event, h=bare_handler: h(e), sink))  # type: ignore[misc]
            moto_rows.append((route, _percentiles(ours), _percentiles(plain)))
            tapes[route] = (ours_tape, bare_tape)

    replay_rows = []
    for route, bare_handler in bare.items():
        ours, plain = [], []
        ours_tape, bare_tape = tapes[route]
        for i in [*range(args.requests)] * args.replays:
            event = event_for(route, "demo")
            with tape.replay(ours_tape[i]):
                ours.append(_timed(lambda e=event: app.lambda_handler(e, context), sink, CPU))  # type: ignore[misc]
            event = event_for(route, "bare")
            with tape.replay(bare_tape[i]):
                plain.append(_timed(lambda e=event, h=bare_handler: h(e), sink, CPU))  # type: ignore[misc]
        replay_rows.append((route, _percentiles(ours), _percentiles(plain)))

    print(f"\nWarm latency, in-process, {args.requests} requests per route and side (ms)")
    print(
        f"Over replayed AWS responses ({args.requests} x {args.replays} per route and side; botocore signs, "
        "serializes and parses; no network, no service), CPU ms:"
    )
    header = (
        f"{'route':24} {'ours p50':>9} {'ours p99':>9} {'bare p50':>9} {'bare p99':>9} {'overhead p50':>13}"
        f" {'ours/bare p50':>14}"
    )
    print(header)
    for route, (o50, o99), (b50, b99) in replay_rows:
        print(f"{route:24} {o50:9.2f} {o99:9.2f} {b50:9.2f} {b99:9.2f} {o50 - b50:13.2f} {o50 / b50:13.2f}x")
    print("Against moto (moto's own work dominates both sides), wall ms:")
    print(header)
    for route, (o50, o99), (b50, b99) in moto_rows:
        print(f"{route:24} {o50:9.2f} {o99:9.2f} {b50:9.2f} {b99:9.2f} {o50 - b50:13.2f} {o50 / b50:13.2f}x")
    if args.instructions:
        rows: dict[tuple[str, str], Rows] = {}
        for route in bare:
            ours_tape, bare_tape = tapes[route]
            count = WARM_UP + args.instructions
            rows[(route, "ours")] = [(event_for(route, "demo"), ours_tape[i]) for i in range(count)]
            rows[(route, "bare")] = [(event_for(route, "bare"), bare_tape[i]) for i in range(count)]
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "tapes.pickle"
            path.write_bytes(pickle.dumps(rows))
            print(
                f"Instructions per request over replayed responses (callgrind, {args.instructions} requests "
                "per route and side after a warm-up):"
            )
            print(f"{'route':24} {'ours':>12} {'bare':>12} {'overhead':>12} {'ours/bare':>10}")
            for route in bare:
                ours_ir = _instructions(path, route, "ours", args.instructions)
                bare_ir = _instructions(path, route, "bare", args.instructions)
                print(
                    f"{route:24} {ours_ir:12,} {bare_ir:12,} {ours_ir - bare_ir:12,} {ours_ir / bare_ir:9.2f}x"
                )
    print("Goal: our overhead <= 0.5 ms per request (p50), over replayed responses.")


if __name__ == "__main__":
    main()
