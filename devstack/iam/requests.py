"""The IAM authorization requests one AWS API call makes: action, resource ARN and the condition keys AWS
puts in the request context for it, with the call's real values (table and key ARNs, partition keys,
encryption context, sender address).

What is covered is what our code calls, service by service; any other operation becomes a request for
`<service>:<Operation>` on `*`, which a policy scoped to resources refuses (fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr
from typing import Any

from devstack.iam.policy import Request

# The partition key attribute of a table or index (None: unknown), by table name and index name.
KeySchema = Callable[[str, str | None], str | None]
Context = dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Call:
    service: str  # botocore's name: dynamodb, kms, stepfunctions, sesv2, secretsmanager, lambda, events
    operation: str  # TransactWriteItems
    params: Mapping[str, Any]
    region: str
    account: str
    iam_prefix: str  # the service's IAM prefix (its signing name): states for stepfunctions, ses for sesv2


def _request(action: str, resource: str, context: Mapping[str, tuple[str, ...]] | None = None) -> Request:
    return Request(action, resource, tuple(sorted((context or {}).items())))


# ---------------------------------------------------------------- DynamoDB
_TRANSACT_KINDS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _table_arn(call: Call, name: str, index: str | None = None) -> str:
    if name.startswith("arn:"):
        return name
    arn = f"arn:aws:dynamodb:{call.region}:{call.account}:table/{name}"
    return f"{arn}/index/{index}" if index else arn


def _scalar(value: Mapping[str, Any]) -> str:
    ((_type, scalar),) = value.items()
    return scalar.hex() if isinstance(scalar, bytes | bytearray) else str(scalar)


def _leading_key(item: Mapping[str, Any], attribute: str | None) -> tuple[str, ...]:
    if attribute is None or attribute not in item:
        return ()
    return (_scalar(item[attribute]),)


def _query_leading_key(params: Mapping[str, Any], attribute: str | None) -> tuple[str, ...]:
    """The partition key value a Query names: `<key> = :value` in its KeyConditionExpression."""
    expression = str(params.get("KeyConditionExpression") or "")
    names = dict(params.get("ExpressionAttributeNames") or {})
    values = params.get("ExpressionAttributeValues") or {}
    for left, right in re.findall(r"([#\w]+)\s*=\s*(:\w+)", expression):
        if names.get(left, left) == attribute and right in values:
            return (_scalar(values[right]),)
    for name, condition in (params.get("KeyConditions") or {}).items():  # the legacy form
        if name == attribute and condition.get("ComparisonOperator") == "EQ":
            return (_scalar(condition["AttributeValueList"][0]),)
    return ()


def _dynamodb_context(params: Mapping[str, Any], leading: tuple[str, ...]) -> Context:
    context: Context = {}
    if leading:
        context["dynamodb:LeadingKeys"] = leading
    for key in ("ReturnValues", "ReturnConsumedCapacity", "Select"):
        if key in params:
            context[f"dynamodb:{key}"] = (str(params[key]),)
    attributes = params.get("AttributesToGet")
    if attributes:
        context["dynamodb:Attributes"] = tuple(attributes)
    return context


def _dynamodb(call: Call, key_schema: KeySchema) -> list[Request]:
    params, operation = call.params, call.operation
    if operation in ("TransactWriteItems", "TransactGetItems"):
        found = []
        for entry in params["TransactItems"]:
            ((kind, body),) = entry.items()
            key = body.get("Key") or body.get("Item") or {}
            leading = _leading_key(key, key_schema(body["TableName"], None))
            found.append(
                _request(
                    f"dynamodb:{_TRANSACT_KINDS[kind]}",
                    _table_arn(call, body["TableName"]),
                    _dynamodb_context(body, leading),
                )
            )
        return found
    if operation in ("BatchWriteItem", "BatchGetItem"):
        found = []
        for table, entries in params["RequestItems"].items():
            attribute = key_schema(table, None)
            items = entries["Keys"] if operation == "BatchGetItem" else entries
            keys = [
                item
                if operation == "BatchGetItem"
                else next(iter(item.values())).get("Key") or next(iter(item.values())).get("Item")
                for item in items
            ]
            leading = tuple(sorted({v for key in keys for v in _leading_key(key, attribute)}))
            found.append(
                _request(f"dynamodb:{operation}", _table_arn(call, table), _dynamodb_context({}, leading))
            )
        return found
    table = str(params.get("TableName") or params.get("TableArn") or "*")
    index = params.get("IndexName")
    attribute = key_schema(table, index)
    if operation == "Query":
        leading = _query_leading_key(params, attribute)
    else:
        leading = _leading_key(params.get("Key") or params.get("Item") or {}, attribute)
    return [
        _request(f"dynamodb:{operation}", _table_arn(call, table, index), _dynamodb_context(params, leading))
    ]


# ---------------------------------------------------------------- KMS
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _key_arn(call: Call, key_id: str) -> str:
    if key_id.startswith("arn:"):
        return key_id
    if key_id.startswith("alias/"):
        return f"arn:aws:kms:{call.region}:{call.account}:{key_id}"  # the alias, not its key: fails closed
    return f"arn:aws:kms:{call.region}:{call.account}:key/{key_id}"


def _kms(call: Call) -> list[Request]:
    params = call.params
    key_id = params.get("KeyId") or params.get("DestinationKeyId")
    if not key_id and isinstance(params.get("CiphertextBlob"), bytes | bytearray):
        # A symmetric Decrypt without KeyId: AWS authorizes against the key inside the ciphertext (moto's
        # ciphertext starts with the key's id).
        found = _UUID.match(bytes(params["CiphertextBlob"])[:36])
        key_id = found.group().decode() if found else None
    resource = _key_arn(call, str(key_id)) if key_id else f"arn:aws:kms:{call.region}:{call.account}:key/?"
    encryption = params.get("EncryptionContext") or {}
    context: Context = {f"kms:EncryptionContext:{k}": (str(v),) for k, v in encryption.items()}
    if encryption:
        context["kms:EncryptionContextKeys"] = tuple(sorted(encryption))
    context["kms:CallerAccount"] = (call.account,)
    if params.get("EncryptionAlgorithm"):
        context["kms:EncryptionAlgorithm"] = (str(params["EncryptionAlgorithm"]),)
    if params.get("KeySpec"):
        context["kms:DataKeySpec"] = (str(params["KeySpec"]),)
    if str(key_id or "").startswith(("alias/", f"arn:aws:kms:{call.region}:{call.account}:alias/")):
        context["kms:RequestAlias"] = (str(key_id).rsplit(":", 1)[-1],)
    return [_request(f"kms:{call.operation}", resource, context)]


# ---------------------------------------------------------------- the others
def _secretsmanager(call: Call) -> list[Request]:
    secret = str(call.params.get("SecretId") or "*")
    # A secret named without its ARN: AWS authorizes its full ARN (with 6 random characters); the name's
    # ARN without them matches only a policy that ends in `*` (fails closed otherwise).
    resource = (
        secret
        if secret.startswith("arn:")
        else f"arn:aws:secretsmanager:{call.region}:{call.account}:secret:{secret}"
    )
    context: Context = {"secretsmanager:SecretId": (secret,)}
    if call.params.get("VersionStage"):
        context["secretsmanager:VersionStage"] = (str(call.params["VersionStage"]),)
    return [_request(f"secretsmanager:{call.operation}", resource, context)]


def _states(call: Call) -> list[Request]:
    params = call.params
    if call.operation.startswith("SendTask"):
        resource = "*"  # a task token names no resource (IAM service reference)
    else:
        resource = str(
            params.get("stateMachineArn") or params.get("executionArn") or params.get("resourceArn") or "*"
        )
    context: Context = {}
    parts = resource.split(":")
    if len(parts) == 8 and parts[5] == "stateMachine":
        # Through an alias or a version: Step Functions authorizes on the state machine's own ARN and puts the
        # qualifier in `states:StateMachineQualifier` ("Authorization for versions and aliases").
        resource, context["states:StateMachineQualifier"] = ":".join(parts[:7]), (parts[7],)
    return [_request(f"states:{call.operation}", resource, context)]


def _ses(call: Call) -> list[Request]:
    params = call.params
    address = parseaddr(str(params.get("FromEmailAddress", "")))[1]
    name = parseaddr(str(params.get("FromEmailAddress", "")))[0]
    destination = params.get("Destination") or {}
    recipients = [
        a
        for _, a in getaddresses(
            [
                *destination.get("ToAddresses", []),
                *destination.get("CcAddresses", []),
                *destination.get("BccAddresses", []),
            ]
        )
    ]
    context: Context = {"ses:ApiVersion": ("2",), "ses:FromAddress": (address,)}
    if name:
        context["ses:FromDisplayName"] = (name,)
    if recipients:
        context["ses:Recipients"] = tuple(recipients)
    # The verified identity that sends: the address's (a domain identity would be identity/<domain>).
    found = [
        _request(
            f"ses:{call.operation}", f"arn:aws:ses:{call.region}:{call.account}:identity/{address}", context
        )
    ]
    if params.get("ConfigurationSetName"):
        arn = f"arn:aws:ses:{call.region}:{call.account}:configuration-set/{params['ConfigurationSetName']}"
        found.append(_request(f"ses:{call.operation}", arn, context))
    return found


def _lambda(call: Call) -> list[Request]:
    name = str(call.params.get("FunctionName") or "*")
    if not name.startswith("arn:"):
        name = f"arn:aws:lambda:{call.region}:{call.account}:function:{name}"
    if call.params.get("Qualifier"):
        name = f"{name}:{call.params['Qualifier']}"
    action = (
        "lambda:InvokeFunction" if call.operation in ("Invoke", "InvokeAsync") else f"lambda:{call.operation}"
    )
    return [_request(action, name)]


def _events(call: Call) -> list[Request]:
    """PutEvents: each entry is authorized on its bus (the default bus when it names none), with its source
    and detail-type as condition keys."""
    found = []
    for entry in call.params.get("Entries", []):
        bus = str(entry.get("EventBusName") or "default")
        if not bus.startswith("arn:"):
            bus = f"arn:aws:events:{call.region}:{call.account}:event-bus/{bus}"
        context: Context = {
            "events:source": (str(entry.get("Source", "")),),
            "events:detail-type": (str(entry.get("DetailType", "")),),
        }
        found.append(_request("events:PutEvents", bus, context))
    return found


def _sqs(call: Call) -> list[Request]:
    """A queue is named by its URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`, or moto's); IAM
    authorizes its ARN. SendMessageBatch is authorized as sqs:SendMessage (IAM service reference)."""
    url = str(call.params.get("QueueUrl") or "")
    parts = [p for p in url.split("/") if p]
    if len(parts) < 2:
        return [_request(f"sqs:{call.operation}", "*")]
    account = parts[-2] if parts[-2].isdigit() else call.account
    action = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage"}.get(
        call.operation, call.operation
    )
    return [_request(f"sqs:{action}", f"arn:aws:sqs:{call.region}:{account}:{parts[-1]}")]


def authorization_requests(call: Call, key_schema: KeySchema) -> list[Request]:
    """The requests AWS authorizes for the call, all of which must be allowed."""
    if call.service == "dynamodb":
        return _dynamodb(call, key_schema)
    if call.service == "kms":
        return _kms(call)
    if call.service == "secretsmanager":
        return _secretsmanager(call)
    if call.service == "stepfunctions":
        return _states(call)
    if call.service == "sesv2" and call.operation == "SendEmail":
        return _ses(call)
    if call.service == "lambda":
        return _lambda(call)
    if call.service == "events" and call.operation == "PutEvents":
        return _events(call)
    if call.service == "sqs":
        return _sqs(call)
    return [_request(f"{call.iam_prefix}:{call.operation}", "*")]  # unknown here: scoped policies refuse it
