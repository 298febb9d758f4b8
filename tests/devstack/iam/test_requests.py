"""The authorization requests a call makes (devstack/iam/requests.py): what IAM evaluates for it."""

from __future__ import annotations

from typing import Any

from devstack.iam.policy import Request
from devstack.iam.requests import Call, authorization_requests

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/agents"


def _schema(table: str, index: str | None) -> str | None:
    return {None: "pk", "ByStatus": "gsi1pk"}.get(index) if table.endswith("agents") else None


def _requests(
    service: str, operation: str, params: dict[str, Any], prefix: str | None = None
) -> list[Request]:
    call = Call(service, operation, params, "us-east-1", "123456789012", prefix or service)
    return authorization_requests(call, _schema)


def test_a_transaction_is_one_request_per_item_with_its_own_partition_key() -> None:
    found = _requests(
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Update": {"TableName": "agents", "Key": {"pk": {"S": "INVITE#ab"}, "sk": {"S": "INVITE"}}}},
                {
                    "ConditionCheck": {
                        "TableName": "agents",
                        "Key": {"pk": {"S": "TENANT#t"}, "sk": {"S": "A"}},
                    }
                },
            ]
        },
    )
    assert found == [
        Request("dynamodb:UpdateItem", TABLE, (("dynamodb:LeadingKeys", ("INVITE#ab",)),)),
        Request("dynamodb:ConditionCheckItem", TABLE, (("dynamodb:LeadingKeys", ("TENANT#t",)),)),
    ]


def test_a_query_names_its_partition_key_on_the_table_or_the_index() -> None:
    on_table = _requests(
        "dynamodb",
        "Query",
        {
            "TableName": "agents",
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":pk": {"S": "TENANT#t"}, ":p": {"S": "AGENT#"}},
        },
    )
    on_index = _requests(
        "dynamodb",
        "Query",
        {
            "TableName": "agents",
            "IndexName": "ByStatus",
            "KeyConditionExpression": "#k = :v",
            "ExpressionAttributeNames": {"#k": "gsi1pk"},
            "ExpressionAttributeValues": {":v": {"S": "TENANT#t#STATUS#failed"}},
        },
    )
    assert on_table == [Request("dynamodb:Query", TABLE, (("dynamodb:LeadingKeys", ("TENANT#t",)),))]
    assert on_index == [
        Request(
            "dynamodb:Query",
            f"{TABLE}/index/ByStatus",
            (("dynamodb:LeadingKeys", ("TENANT#t#STATUS#failed",)),),
        )
    ]


def test_kms_carries_every_key_of_the_encryption_context() -> None:
    (found,) = _requests(
        "kms",
        "GenerateDataKey",
        {"KeyId": "k1", "KeySpec": "AES_256", "EncryptionContext": {"tenantId": "t", "purpose": "password"}},
    )
    assert found.resource == "arn:aws:kms:us-east-1:123456789012:key/k1"
    assert found.context_dict() == {
        "kms:CallerAccount": ("123456789012",),
        "kms:DataKeySpec": ("AES_256",),
        "kms:EncryptionContext:purpose": ("password",),
        "kms:EncryptionContext:tenantId": ("t",),
        "kms:EncryptionContextKeys": ("purpose", "tenantId"),
    }


def test_an_email_is_authorized_on_its_sender_identity_and_configuration_set() -> None:
    found = _requests(
        "sesv2",
        "SendEmail",
        {
            "FromEmailAddress": "Onboarding <invites@example.com>",
            "Destination": {"ToAddresses": ["Ann <ann@contoso.com>"]},
            "ConfigurationSetName": "invites",
        },
        prefix="ses",
    )
    assert [r.resource.rsplit(":", 1)[-1] for r in found] == [
        "identity/invites@example.com",
        "configuration-set/invites",
    ]
    assert found[0].context_dict()["ses:FromAddress"] == ("invites@example.com",)
    assert found[0].context_dict()["ses:Recipients"] == ("ann@contoso.com",)


def test_an_operation_not_known_here_is_asked_on_star_under_the_services_iam_prefix() -> None:
    assert _requests("stepfunctions", "ListStateMachines", {}, prefix="states") == [
        Request("states:ListStateMachines", "*")
    ]
    assert _requests("lambda", "Invoke", {"FunctionName": "f", "Qualifier": "live"}) == [
        Request("lambda:InvokeFunction", "arn:aws:lambda:us-east-1:123456789012:function:f:live")
    ]
