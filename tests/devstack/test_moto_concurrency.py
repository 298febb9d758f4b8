"""moto's DynamoDB under the local stack's concurrent callers (gateway threads, stream pollers, workflow
tasks): `make bench` used to print moto tracebacks ("dictionary changed size during iteration" in
`transact_write_items`, which deep-copies a table while other request threads write to it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from devstack.stack import OneDynamoDBRequestAtATime, _bind

THREADS, WRITES = 6, 60


@pytest.fixture
def moto_server_url() -> Iterator[str]:
    """moto's server app exactly as the local stack serves it."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    app = OneDynamoDBRequestAtATime(DomainDispatcherApplication(create_backend_app))
    server = _bind(0, app, "moto", request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def client(url: str) -> object:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),  # a 500 is a failure here, not something to retry
    )


def test_concurrent_transactions_and_writes_all_succeed(moto_server_url: str) -> None:
    # Given a table and six clients, half writing in transactions, half with PutItem
    ddb = client(moto_server_url)
    ddb.create_table(  # type: ignore[attr-defined]
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    errors: list[str] = []

    def write(worker: int) -> None:
        mine = client(moto_server_url)
        for i in range(WRITES):
            item = {"pk": {"S": f"{worker}-{i}"}}
            try:
                if worker % 2:
                    mine.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": item}}])  # type: ignore[attr-defined]
                else:
                    mine.put_item(TableName="t", Item=item)  # type: ignore[attr-defined]
            except Exception as error:
                errors.append(f"{type(error).__name__}: {str(error)[:200]}")

    # When they all write at once
    threads = [threading.Thread(target=write, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every write succeeded and every item is there
    assert errors == []
    assert ddb.scan(TableName="t", Select="COUNT")["Count"] == THREADS * WRITES  # type: ignore[attr-defined]
