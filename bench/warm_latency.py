"""Warm latency of each API route, invoked in-process against moto, beside a bare handler that makes the
same DynamoDB calls with boto3 alone. The ratio is the framework's overhead (Powertools resolver and
validation, pydantic models, logging); the DynamoDB time (moto) is in both sides alike.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import time
from collections.abc import Callable
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
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)

import warnings

import boto3
from moto import mock_aws

from devstack.events import api_event
from devstack.runtime import LambdaContext

TABLE = "bench-agents"


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


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
        }
        guard = {
            "pk": {"S": f"TENANT#{tenant}"},
            "sk": {"S": f"EMAIL#{body['email'].lower()}"},
            "agentId": {"S": agent_id},
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


def main(argv: list[str] | None = None) -> None:
    warnings.filterwarnings("ignore", message="No application metrics")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    with mock_aws():
        ddb = boto3.client("dynamodb")
        tpl.create_tables(ddb, {"AgentsTable": TABLE, "CredentialsTable": "bench-credentials"})
        from functions.add_agent import app

        context = LambdaContext("bench")
        seed = app.lambda_handler(
            api_event(
                "POST", "/agents", body={"name": "Seed", "email": "seed@contoso.com", "type": "ms_exchange"}
            ),
            context,  # type: ignore[arg-type]
        )
        bare = _bare_handlers(ddb)
        seed_body = {"name": "Seed", "email": "seed@contoso.com", "type": "ms_exchange"}
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

        print(f"\nWarm latency, in-process against moto, {args.requests} requests per route (ms)")
        print(
            f"{'route':24} {'ours p50':>9} {'ours p99':>9} {'bare p50':>9} {'bare p99':>9} {'p50 ratio':>10}"
        )
        sink = io.StringIO()
        for route, bare_handler in bare.items():
            ours: list[float] = []
            plain: list[float] = []
            for _ in range(args.requests):  # interleaved: noise hits both sides alike
                event = event_for(route, "demo")
                with contextlib.redirect_stdout(sink):  # EMF metrics and logs: written, not shown
                    started = time.perf_counter()
                    app.lambda_handler(event, context)  # type: ignore[arg-type]
                    ours.append(time.perf_counter() - started)
                event = event_for(route, "bare")
                with contextlib.redirect_stdout(sink):
                    started = time.perf_counter()
                    bare_handler(event)
                    plain.append(time.perf_counter() - started)
            o50, o99 = _percentiles(ours)
            b50, b99 = _percentiles(plain)
            print(f"{route:24} {o50:9.2f} {o99:9.2f} {b50:9.2f} {b99:9.2f} {o50 / b50:10.2f}")
        print("Target: p50 ratio <= 1.3.")


if __name__ == "__main__":
    main()
