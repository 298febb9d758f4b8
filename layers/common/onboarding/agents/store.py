"""Agent persistence: one repository interface, one DynamoDB implementation.

Item layout (single table, every key starts with the tenant, so one tenant's items are never read
under another's):

    agent        pk=TENANT#<tenant>  sk=AGENT#<agentId>    gsi1pk=TENANT#<tenant>#STATUS#<status>
    email guard  pk=TENANT#<tenant>  sk=EMAIL#<lowercased email>   (makes a mailbox unique per tenant)

Status changes are conditional writes on (status, version): an illegal transition is a typed error,
a concurrent change is detected, nothing is silently overwritten.
"""

from __future__ import annotations

import base64
import binascii
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from pydantic import TypeAdapter, ValidationError

from onboarding.agents.models import (
    AGENT_FIELDS,
    HEALTH_FIELDS,
    Agent,
    AgentHealth,
    AgentId,
    AgentPage,
    AgentRecord,
    AgentStatus,
    HealthState,
    can_transition,
    utcnow,
)
from onboarding.core.dynamo_types import from_item, to_item
from onboarding.core.errors import (
    AgentNotFoundError,
    ConcurrentModificationError,
    DuplicateAgentError,
    IllegalTransitionError,
    InvalidPageTokenError,
    error_code,
)

STATUS_INDEX = "ByStatus"
_AGENT_ID: TypeAdapter[str] = TypeAdapter(AgentId)
# Reads that return the public agent ask DynamoDB for its fields (and those its health is built from) only:
# the private state (invite, the connection's Exchange trace) is neither transferred nor parsed for a page of
# the dashboard.
_AGENT_NAMES = {f"#a{i}": name for i, name in enumerate(sorted(AGENT_FIELDS | HEALTH_FIELDS))}
_AGENT_PROJECTION = {
    "ProjectionExpression": ", ".join(_AGENT_NAMES),
    "ExpressionAttributeNames": _AGENT_NAMES,
}


def tenant_pk(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


def agent_sk(agent_id: str) -> str:
    return f"AGENT#{agent_id}"


def email_sk(email: str) -> str:
    return f"EMAIL#{email.lower()}"


def status_pk(tenant_id: str, status: AgentStatus) -> str:
    return f"TENANT#{tenant_id}#STATUS#{status.value}"


def _agent_from_item(item: Mapping[str, Any]) -> Agent:
    values = from_item(item)
    agent = Agent.model_validate({k: v for k, v in values.items() if k in AGENT_FIELDS})
    health = HealthState.model_validate({k: v for k, v in values.items() if k in HEALTH_FIELDS})
    return agent.model_copy(update={"health": AgentHealth.of(health, email=agent.email)})


class AgentRepository(ABC):
    """What the logic needs from storage, whatever the storage is.

    Service-private attributes are named by `onboarding.agents.models.Attr` (the aliases of `AgentRecord`)."""

    @abstractmethod
    def create(self, record: AgentRecord) -> Agent:
        """Store a new agent with its private state; DuplicateAgentError if its address is taken."""

    @abstractmethod
    def get(self, tenant_id: str, agent_id: str) -> Agent:
        """The agent, or AgentNotFoundError."""

    @abstractmethod
    def get_record(self, tenant_id: str, agent_id: str) -> AgentRecord | None:
        """The agent with its private state (invite, connection), or None."""

    @abstractmethod
    def list(
        self, tenant_id: str, *, status: AgentStatus | None, limit: int, next_token: str | None
    ) -> AgentPage: ...

    @abstractmethod
    def transition(
        self,
        tenant_id: str,
        agent_id: str,
        target: AgentStatus,
        *,
        reason: str | None = None,
        expected_version: int | None = None,
        set_attributes: Mapping[str, Any] | None = None,
        remove_attributes: tuple[str, ...] = (),
    ) -> Agent: ...

    @abstractmethod
    def update_attributes(
        self,
        tenant_id: str,
        agent_id: str,
        values: Mapping[str, Any],
        *,
        expected_status: AgentStatus,
        remove_attributes: tuple[str, ...] = (),
        expected: Mapping[str, Any] | None = None,
    ) -> None:
        """Set private attributes (never status or version) while the agent is in `expected_status` (and
        its `expected` attributes hold those values); ConcurrentModificationError once it is not."""

    @abstractmethod
    def delete(self, tenant_id: str, agent_id: str) -> Agent | None:
        """Remove the agent; idempotent (None when it was not there)."""


class DynamoAgentRepository(AgentRepository):
    def __init__(self, table_name: str, ddb: Any) -> None:
        self.table_name = table_name
        self.ddb = ddb

    # -- reads -------------------------------------------------------------------------------
    def _raw_item(self, tenant_id: str, agent_id: str, **projection: Any) -> dict[str, Any] | None:
        response = self.ddb.get_item(
            TableName=self.table_name,
            Key=to_item({"pk": tenant_pk(tenant_id), "sk": agent_sk(agent_id)}),
            ConsistentRead=True,
            **projection,
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def get_item(self, tenant_id: str, agent_id: str) -> dict[str, Any] | None:
        """The agent's whole item as stored (keys included), or None: for tests and diagnostics."""
        item = self._raw_item(tenant_id, agent_id)
        return from_item(item) if item else None

    def get_record(self, tenant_id: str, agent_id: str) -> AgentRecord | None:
        item = self._raw_item(tenant_id, agent_id)
        return AgentRecord.from_values(from_item(item)) if item else None

    def get(self, tenant_id: str, agent_id: str) -> Agent:
        item = self._raw_item(tenant_id, agent_id, **_AGENT_PROJECTION)
        if not item:
            raise AgentNotFoundError(f"No agent {agent_id} in this account")
        return _agent_from_item(item)

    def list(
        self, tenant_id: str, *, status: AgentStatus | None, limit: int, next_token: str | None
    ) -> AgentPage:
        start = _decode_page_token(next_token) if next_token else None
        if status is None:
            query: dict[str, Any] = {
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": to_item({":pk": tenant_pk(tenant_id), ":prefix": "AGENT#"}),
                "ConsistentRead": True,
            }
            if start:
                query["ExclusiveStartKey"] = to_item({"pk": tenant_pk(tenant_id), "sk": start})
        else:
            query = {
                "IndexName": STATUS_INDEX,
                "KeyConditionExpression": "gsi1pk = :pk",
                "ExpressionAttributeValues": to_item({":pk": status_pk(tenant_id, status)}),
            }
            if start:
                query["ExclusiveStartKey"] = to_item(
                    {
                        "pk": tenant_pk(tenant_id),
                        "sk": start,
                        "gsi1pk": status_pk(tenant_id, status),
                        "gsi1sk": start,
                    }
                )
        response = self.ddb.query(TableName=self.table_name, Limit=limit, **query, **_AGENT_PROJECTION)
        items = [_agent_from_item(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        token = _encode_page_token(from_item(last)["sk"]) if last else None
        return AgentPage(items=items, next_token=token)

    # -- writes ------------------------------------------------------------------------------
    def create(self, record: AgentRecord) -> Agent:
        """Store a new agent with its email guard; the private state stays on the item (not returned)."""
        agent = record.agent
        item = {
            **record.values(),
            "pk": tenant_pk(agent.tenant_id),
            "sk": agent_sk(agent.agent_id),
            "gsi1pk": status_pk(agent.tenant_id, agent.status),
            "gsi1sk": agent_sk(agent.agent_id),
            "entity": "agent",
        }
        guard = {
            "pk": tenant_pk(agent.tenant_id),
            "sk": email_sk(agent.email),
            "agentId": agent.agent_id,
            "entity": "email_guard",
        }
        try:
            self.ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": to_item(guard),
                            "ConditionExpression": "attribute_not_exists(pk)",
                            # A duplicate says which agent has the address (the guard holds its id).
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": to_item(item),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as error:
            if error_code(error) == "TransactionCanceledException" and _cancelled_by_condition(error, 0):
                detail: dict[str, Any] = {"field": "email", "message": "already used by another agent"}
                if existing := _cancelled_item(error, 0).get("agentId"):
                    detail["agentId"] = existing
                raise DuplicateAgentError(
                    f"An agent with the email address {agent.email} already exists in this account",
                    details=[detail],
                ) from error
            raise
        return agent

    def transition(
        self,
        tenant_id: str,
        agent_id: str,
        target: AgentStatus,
        *,
        reason: str | None = None,
        expected_version: int | None = None,
        set_attributes: Mapping[str, Any] | None = None,
        remove_attributes: tuple[str, ...] = (),
    ) -> Agent:
        if target is AgentStatus.REMOVED:
            raise IllegalTransitionError("Use delete() to remove an agent")
        for _ in range(3):
            current = self.get(tenant_id, agent_id)
            if expected_version is not None and current.version != expected_version:
                raise ConcurrentModificationError(
                    f"Agent {agent_id} is at version {current.version}, not {expected_version}"
                )
            if not can_transition(current.status, target):
                raise IllegalTransitionError(
                    f"An agent in status {current.status.value} cannot move to {target.value}"
                )
            try:
                return self._write_transition(
                    current, target, reason, dict(set_attributes or {}), remove_attributes
                )
            except ClientError as error:
                if error_code(error) != "ConditionalCheckFailedException":
                    raise
                if expected_version is not None:
                    raise ConcurrentModificationError(f"Agent {agent_id} changed meanwhile") from error
        raise ConcurrentModificationError(f"Agent {agent_id} keeps changing; try again")

    def _write_transition(
        self,
        current: Agent,
        target: AgentStatus,
        reason: str | None,
        extra: dict[str, Any],
        remove_attributes: tuple[str, ...],
    ) -> Agent:
        now = utcnow()
        values: dict[str, Any] = {
            "status": target.value,
            "gsi1pk": status_pk(current.tenant_id, target),
            "updatedAt": now,
            "version": current.version + 1,
            **extra,
        }
        if target is AgentStatus.VERIFIED:
            values["verifiedAt"] = now
        if reason is not None:
            values["statusReason"] = reason
        else:
            remove_attributes = (*remove_attributes, "statusReason")
        expression, names, placeholders = _update_expression(values, remove_attributes)
        names.update({"#status": "status", "#version": "version"})
        placeholders.update({":from": current.status.value, ":version": current.version})
        response = self.ddb.update_item(
            TableName=self.table_name,
            Key=to_item({"pk": tenant_pk(current.tenant_id), "sk": agent_sk(current.agent_id)}),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(pk) AND #status = :from AND #version = :version",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(placeholders),
            ReturnValues="ALL_NEW",
        )
        return _agent_from_item(response["Attributes"])

    def update_attributes(
        self,
        tenant_id: str,
        agent_id: str,
        values: Mapping[str, Any],
        *,
        expected_status: AgentStatus,
        remove_attributes: tuple[str, ...] = (),
        expected: Mapping[str, Any] | None = None,
    ) -> None:
        """Set service-private attributes (never status or version) while the agent is in a status."""
        expression, names, placeholders = _update_expression(values, remove_attributes)
        names["#status"] = "status"
        placeholders[":status"] = expected_status.value
        condition = "attribute_exists(pk) AND #status = :status"
        for i, (name, value) in enumerate((expected or {}).items()):
            names[f"#e{i}"], placeholders[f":e{i}"] = name, value
            condition += f" AND #e{i} = :e{i}"
        try:
            self.ddb.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": tenant_pk(tenant_id), "sk": agent_sk(agent_id)}),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(placeholders),
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise ConcurrentModificationError(
                    f"Agent {agent_id} is no longer {expected_status.value}"
                ) from error
            raise

    def delete(self, tenant_id: str, agent_id: str) -> Agent | None:
        """Remove the agent and its email guard together. Idempotent: a missing agent returns None."""
        for _ in range(3):
            try:
                current = self.get(tenant_id, agent_id)
            except AgentNotFoundError:
                return None
            try:
                self.ddb.transact_write_items(
                    TransactItems=[
                        {
                            "Delete": {
                                "TableName": self.table_name,
                                "Key": to_item({"pk": tenant_pk(tenant_id), "sk": agent_sk(agent_id)}),
                                "ConditionExpression": "#version = :version",
                                "ExpressionAttributeNames": {"#version": "version"},
                                "ExpressionAttributeValues": to_item({":version": current.version}),
                            }
                        },
                        {
                            "Delete": {
                                "TableName": self.table_name,
                                "Key": to_item({"pk": tenant_pk(tenant_id), "sk": email_sk(current.email)}),
                            }
                        },
                    ]
                )
            except ClientError as error:
                if error_code(error) == "TransactionCanceledException":
                    continue  # changed or removed meanwhile: read again
                raise
            return current
        raise ConcurrentModificationError(f"Agent {agent_id} keeps changing; try again")


def _update_expression(
    values: Mapping[str, Any], remove: tuple[str, ...]
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """`SET #a0 = :a0, ... REMOVE #r0, ...` with its name and value placeholders (any attribute name)."""
    names = {f"#a{i}": name for i, name in enumerate(values)}
    names.update({f"#r{i}": name for i, name in enumerate(remove)})
    placeholders = {f":a{i}": value for i, value in enumerate(values.values())}
    clauses = []
    if values:
        clauses.append("SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(values))))
    if remove:
        clauses.append("REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove))))
    return " ".join(clauses), names, placeholders


def _cancelled_by_condition(error: ClientError, index: int) -> bool:
    reasons = error.response.get("CancellationReasons") or []
    if index < len(reasons):
        return reasons[index].get("Code") == "ConditionalCheckFailed"
    # Older emulators omit reasons; the message then lists them in order.
    return "ConditionalCheckFailed" in str(error.response.get("Error", {}).get("Message", ""))


def _cancelled_item(error: ClientError, index: int) -> dict[str, Any]:
    """The item a cancelled transaction's `index`-th action found (ReturnValuesOnConditionCheckFailure)."""
    reasons = error.response.get("CancellationReasons") or []
    item = reasons[index].get("Item") if index < len(reasons) else None
    return from_item(item) if item else {}


def _encode_page_token(sort_key: str) -> str:
    raw = json.dumps({"k": sort_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))["k"]
        if not isinstance(key, str) or not key.startswith("AGENT#"):
            raise ValueError(key)
        _AGENT_ID.validate_python(key.removeprefix("AGENT#"))
    except (ValueError, KeyError, TypeError, binascii.Error, ValidationError) as error:
        raise InvalidPageTokenError(
            "nextToken is not one this API returned",
            details=[{"field": "nextToken", "message": "pass the nextToken of the previous page as is"}],
        ) from error
    return key
