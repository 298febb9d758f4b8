"""Invite persistence, in the agents table.

    invite   pk=INVITE#<sha256(token) hex>  sk=INVITE   entity=invite
             tenantId, agentId, inviteVersion, purpose (invite | reconnect | password_expiry: a reconnect link
             also names its reconnectVersion), createdAt, expiresAt, ttl, failedAttempts?, usedAt?,
             countedFailures? (the verdicts counted), excusedFailure? (the one verdict not counted:
             `onboarding.invites.delivery.windows_login_in_doubt`)

Unlike agent items the key does not start with the tenant: a visitor of a link knows only the token,
so the item is found by the token's hash and names its tenant and agent. `ttl` (epoch seconds) lets
DynamoDB delete the item some time after it expired; expiry itself is checked in code, since TTL
deletes late (and a little grace keeps "expired" distinguishable from "never existed").

A token is valid only while its `inviteVersion` equals the agent's: a resend bumps the agent's version
and so revokes every earlier link without touching them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from onboarding.agents.models import AgentStatus
from onboarding.agents.store import agent_sk, tenant_pk
from onboarding.core.dynamo_types import from_item, to_item
from onboarding.core.errors import (
    InviteLockedError,
    InviteNotFoundError,
    InviteRevokedError,
    InviteUsedError,
    error_code,
)
from onboarding.core.times import iso
from onboarding.invites.models import Invite

TTL_GRACE = timedelta(days=30)


def invite_pk(token_hash: str) -> str:
    return f"INVITE#{token_hash}"


INVITE_SK = "INVITE"


def _cancel_codes(error: ClientError) -> list[str]:
    return [str(r.get("Code") or "None") for r in error.response.get("CancellationReasons") or []]


class _TransactionConflict(Exception):
    pass


def _still_current(invite: Invite) -> dict[str, Any]:
    """The condition on the agent item under which the link is still its current one: the agent's invite
    version, and for a reconnect link its reconnect version too (a newer reconnect email replaces it)."""
    condition = "inviteVersion = :v AND #status <> :removed"
    values: dict[str, Any] = {":v": invite.invite_version, ":removed": AgentStatus.REMOVED.value}
    if invite.reconnect_version is not None:
        condition += " AND reconnectVersion = :rv"
        values[":rv"] = invite.reconnect_version
    return {
        "ConditionExpression": condition,
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": to_item(values),
    }


class InviteRepository(ABC):
    @abstractmethod
    def put(self, invite: Invite) -> None: ...

    @abstractmethod
    def get(self, token_hash: str) -> Invite | None: ...

    @abstractmethod
    def consume(self, invite: Invite, *, at: datetime, max_failed_attempts: int) -> Invite: ...

    @abstractmethod
    def add_failed_attempt(
        self, invite: Invite, *, max_failed_attempts: int, once_per: str | None = None
    ) -> int: ...

    @abstractmethod
    def excuse_once(self, invite: Invite, *, key: str) -> bool:
        """Take the link's one excused failure for `key` (an attempt's verdict): True when `key` holds it,
        taken now or before (a retried step); False when another verdict took it, or the invite is gone,
        used or locked."""

    @abstractmethod
    def count_send_failure(self, tenant_id: str, agent_id: str, invite_version: int) -> int | None: ...

    @abstractmethod
    def claim_send(self, tenant_id: str, agent_id: str, invite_version: int) -> bool:
        """Mark the agent's invite `sending` before the email goes to SES; False if this version was
        claimed before (an earlier run may have sent it)."""

    @abstractmethod
    def release_send(self, tenant_id: str, agent_id: str, invite_version: int) -> None:
        """Nothing was sent: a retry may claim this version again."""

    @abstractmethod
    def record_accepted(self, tenant_id: str, agent_id: str, invite_version: int, message_id: str) -> None:
        """SES accepted the email of this claimed version (its message id): a retry marks it sent."""

    # -- reconnect emails: the same at-most-once protocol as invites, on the HealthState attributes --------
    @abstractmethod
    def claim_reconnect(
        self, tenant_id: str, agent_id: str, version: int, statuses: frozenset[AgentStatus]
    ) -> bool:
        """Mark reconnect email `version` sending just before SES, while it is pending, current and the agent in
        one of `statuses`; False if it was claimed before (or is no longer wanted)."""

    @abstractmethod
    def release_reconnect(self, tenant_id: str, agent_id: str, version: int) -> None: ...

    @abstractmethod
    def record_reconnect_accepted(
        self, tenant_id: str, agent_id: str, version: int, message_id: str
    ) -> None: ...

    @abstractmethod
    def count_reconnect_failure(self, tenant_id: str, agent_id: str, version: int) -> int | None:
        """Count a failed send of the pending version; None once it is no longer pending."""

    @abstractmethod
    def finish_reconnect(self, tenant_id: str, agent_id: str, version: int, *, sent_at: str | None) -> bool:
        """The pending `version` is handled (sent at `sent_at`, or given up with None): no longer pending.
        False when it was not the pending version (a newer request, or handled before)."""


class DynamoInviteRepository(InviteRepository):
    def __init__(self, table_name: str, ddb: Any) -> None:
        self.table_name = table_name
        self.ddb = ddb

    def _key(self, token_hash: str) -> dict[str, Any]:
        return to_item({"pk": invite_pk(token_hash), "sk": INVITE_SK})

    def put(self, invite: Invite) -> None:
        values = invite.model_dump(mode="json", by_alias=True, exclude_none=True)
        item = {
            **values,
            "pk": invite_pk(invite.token_hash),
            "sk": INVITE_SK,
            "entity": "invite",
            "createdAt": iso(invite.created_at),
            "expiresAt": iso(invite.expires_at),
            "ttl": int((invite.expires_at + TTL_GRACE).timestamp()),
        }
        self.ddb.put_item(
            TableName=self.table_name,
            Item=to_item(item),
            ConditionExpression="attribute_not_exists(pk)",  # 256 random bits never collide; be sure
        )

    def get(self, token_hash: str) -> Invite | None:
        response = self.ddb.get_item(
            TableName=self.table_name, Key=self._key(token_hash), ConsistentRead=True
        )
        item = response.get("Item")
        return Invite.model_validate(from_item(item)) if item else None

    def consume(self, invite: Invite, *, at: datetime, max_failed_attempts: int) -> Invite:
        """Mark the invite used, in one transaction with a check that it is still the agent's current
        invite. Of two racing consumers exactly one wins; the other gets InviteUsedError."""
        for _ in range(3):
            try:
                return self._consume_once(invite, at=at, max_failed_attempts=max_failed_attempts)
            except _TransactionConflict:
                continue  # a concurrent transaction on the same items: judge again once it is done
        raise self._why_unusable(invite.token_hash, max_failed_attempts)

    def _consume_once(self, invite: Invite, *, at: datetime, max_failed_attempts: int) -> Invite:
        try:
            self.ddb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": self._key(invite.token_hash),
                            "UpdateExpression": "SET usedAt = :at",
                            "ConditionExpression": (
                                "attribute_exists(pk) AND attribute_not_exists(usedAt)"
                                " AND inviteVersion = :v"
                                " AND (attribute_not_exists(failedAttempts) OR failedAttempts < :max)"
                            ),
                            "ExpressionAttributeValues": to_item(
                                {":at": iso(at), ":v": invite.invite_version, ":max": max_failed_attempts}
                            ),
                        }
                    },
                    {
                        "ConditionCheck": {
                            "TableName": self.table_name,
                            "Key": to_item(
                                {"pk": tenant_pk(invite.tenant_id), "sk": agent_sk(invite.agent_id)}
                            ),
                            **_still_current(invite),
                        }
                    },
                ]
            )
        except ClientError as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            codes = _cancel_codes(error)
            if "TransactionConflict" in codes:
                raise _TransactionConflict from error
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                raise InviteRevokedError("This invite was replaced by a newer one") from error
            raise self._why_unusable(invite.token_hash, max_failed_attempts) from error
        return invite.model_copy(update={"used_at": at})

    def add_failed_attempt(
        self, invite: Invite, *, max_failed_attempts: int, once_per: str | None = None
    ) -> int:
        """Count one wrong password; returns the attempts so far. Refused once used or locked.

        `once_per` names what is counted (an attempt's verdict): counting it again (a retried step)
        changes nothing and returns the count as it is."""
        update, condition = "ADD failedAttempts :one", ""
        values: dict[str, Any] = {":one": 1, ":max": max_failed_attempts}
        if once_per is not None:
            update += ", countedFailures :keys"
            condition = " AND NOT contains(countedFailures, :key)"
            values.update({":keys": {once_per}, ":key": once_per})
        try:
            response = self.ddb.update_item(
                TableName=self.table_name,
                Key=self._key(invite.token_hash),
                UpdateExpression=update,
                ConditionExpression=(
                    "attribute_exists(pk) AND attribute_not_exists(usedAt)"
                    " AND (attribute_not_exists(failedAttempts) OR failedAttempts < :max)" + condition
                ),
                ExpressionAttributeValues=to_item(values),
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
            current = self.ddb.get_item(
                TableName=self.table_name, Key=self._key(invite.token_hash), ConsistentRead=True
            ).get("Item")
            counted = from_item(current).get("countedFailures", set()) if current else set()
            if once_per is not None and once_per in counted:
                return int(from_item(current or {}).get("failedAttempts", 0))
            raise self._why_unusable(invite.token_hash, max_failed_attempts) from error
        return int(from_item(response["Attributes"])["failedAttempts"])

    def excuse_once(self, invite: Invite, *, key: str) -> bool:
        try:
            self.ddb.update_item(
                TableName=self.table_name,
                Key=self._key(invite.token_hash),
                UpdateExpression="SET excusedFailure = :key",
                ConditionExpression=(
                    "attribute_exists(pk) AND attribute_not_exists(usedAt)"
                    " AND (attribute_not_exists(excusedFailure) OR excusedFailure = :key)"
                ),
                ExpressionAttributeValues=to_item({":key": key}),
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _why_unusable(self, token_hash: str, max_failed_attempts: int) -> Exception:
        current = self.get(token_hash)
        if current is None:
            return InviteNotFoundError("No such invite")
        if current.used_at is not None:
            return InviteUsedError("This invite was already used")
        if current.failed_attempts >= max_failed_attempts:
            return InviteLockedError("Too many failed attempts with this invite; ask for a new one")
        return InviteRevokedError("This invite is no longer valid")

    def claim_send(self, tenant_id: str, agent_id: str, invite_version: int) -> bool:
        # The write keeps the agent `invite_pending`, so the stream filter ignores the record it makes.
        try:
            self.ddb.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": tenant_pk(tenant_id), "sk": agent_sk(agent_id)}),
                UpdateExpression="SET inviteSending = :v",
                ConditionExpression=(
                    "inviteVersion = :v AND #status = :pending"
                    " AND (attribute_not_exists(inviteSending) OR inviteSending <> :v)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {":v": invite_version, ":pending": AgentStatus.INVITE_PENDING.value}
                ),
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release_send(self, tenant_id: str, agent_id: str, invite_version: int) -> None:
        try:
            self.ddb.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": tenant_pk(tenant_id), "sk": agent_sk(agent_id)}),
                UpdateExpression="REMOVE inviteSending",
                ConditionExpression="inviteSending = :v",
                ExpressionAttributeValues=to_item({":v": invite_version}),
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise

    def record_accepted(self, tenant_id: str, agent_id: str, invite_version: int, message_id: str) -> None:
        # Keeps the agent `invite_pending` (the stream filter ignores the record); conditioned on the claim,
        # so it never lands on a newer version's.
        try:
            self.ddb.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": tenant_pk(tenant_id), "sk": agent_sk(agent_id)}),
                UpdateExpression="SET inviteAccepted = :v, inviteMessageId = :id",
                ConditionExpression="inviteSending = :v AND inviteVersion = :v",
                ExpressionAttributeValues=to_item({":v": invite_version, ":id": message_id}),
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise

    def count_send_failure(self, tenant_id: str, agent_id: str, invite_version: int) -> int | None:
        """Count a failed send of the agent's current invite; None if the agent moved on meanwhile.

        The write keeps the agent `invite_pending`, so the stream filter ignores the record it makes."""
        try:
            response = self.ddb.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": tenant_pk(tenant_id), "sk": agent_sk(agent_id)}),
                UpdateExpression="ADD inviteAttempts :one",
                ConditionExpression="inviteVersion = :v AND #status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {":one": 1, ":v": invite_version, ":pending": AgentStatus.INVITE_PENDING.value}
                ),
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return None
            raise
        return int(from_item(response["Attributes"])["inviteAttempts"])

    # -- reconnect emails ----------------------------------------------------------------------------
    def _agent_update(self, tenant_id: str, agent_id: str, **request: Any) -> dict[str, Any] | None:
        """A conditional update of the agent item; None when its condition failed."""
        try:
            response: dict[str, Any] = self.ddb.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": tenant_pk(tenant_id), "sk": agent_sk(agent_id)}),
                **request,
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return None
            raise
        return response

    def claim_reconnect(
        self, tenant_id: str, agent_id: str, version: int, statuses: frozenset[AgentStatus]
    ) -> bool:
        # Leaves reconnectPending as it is, so the stream filter ignores the record this write makes.
        wanted = {f":s{i}": status.value for i, status in enumerate(sorted(statuses))}
        return (
            self._agent_update(
                tenant_id,
                agent_id,
                UpdateExpression="SET reconnectSending = :v",
                ConditionExpression=(
                    f"reconnectVersion = :v AND reconnectPending = :v AND #status IN ({', '.join(wanted)})"
                    " AND (attribute_not_exists(reconnectSending) OR reconnectSending <> :v)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item({":v": version, **wanted}),
            )
            is not None
        )

    def release_reconnect(self, tenant_id: str, agent_id: str, version: int) -> None:
        self._agent_update(
            tenant_id,
            agent_id,
            UpdateExpression="REMOVE reconnectSending",
            ConditionExpression="reconnectSending = :v",
            ExpressionAttributeValues=to_item({":v": version}),
        )

    def record_reconnect_accepted(self, tenant_id: str, agent_id: str, version: int, message_id: str) -> None:
        self._agent_update(
            tenant_id,
            agent_id,
            UpdateExpression="SET reconnectAccepted = :v, reconnectMessageId = :id",
            ConditionExpression="reconnectSending = :v AND reconnectVersion = :v",
            ExpressionAttributeValues=to_item({":v": version, ":id": message_id}),
        )

    def count_reconnect_failure(self, tenant_id: str, agent_id: str, version: int) -> int | None:
        response = self._agent_update(
            tenant_id,
            agent_id,
            UpdateExpression="ADD reconnectAttempts :one",
            ConditionExpression="reconnectPending = :v AND reconnectVersion = :v",
            ExpressionAttributeValues=to_item({":one": 1, ":v": version}),
            ReturnValues="UPDATED_NEW",
        )
        return None if response is None else int(from_item(response["Attributes"])["reconnectAttempts"])

    def finish_reconnect(self, tenant_id: str, agent_id: str, version: int, *, sent_at: str | None) -> bool:
        update = "REMOVE reconnectPending, reconnectAttempts"
        values: dict[str, Any] = {":v": version}
        if sent_at is not None:
            update = "SET reconnectSentAt = :at " + update
            values[":at"] = sent_at
        return (
            self._agent_update(
                tenant_id,
                agent_id,
                UpdateExpression=update,
                ConditionExpression="reconnectPending = :v AND reconnectVersion = :v",
                ExpressionAttributeValues=to_item(values),
            )
            is not None
        )
