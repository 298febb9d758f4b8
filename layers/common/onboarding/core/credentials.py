"""Mailbox secrets (passwords, later OAuth refresh tokens) under envelope encryption, one small item each.

Each secret is sealed with its own AES-256-GCM data key from KMS (`GenerateDataKey` on the service's
customer-managed key). The encryption context `{tenantId, agentId, purpose}` binds the data key to its
owner: KMS refuses to unwrap it for any other agent, tenant or purpose, and the same context is the
AES-GCM associated data. The item (wrapped data key + ciphertext, ~300 bytes) lives in its own table,
which the dashboard API function may only delete from, never read (see template.yaml).

Why a table of its own and not an item beside the agent: IAM can limit a function to some partition
keys (`dynamodb:LeadingKeys`) but not to a sort-key prefix, so in the agents table "the API cannot read
ciphertext" could not be said in IAM. Storage costs ~$0.0000001 per mailbox-month (DynamoDB at
$0.25/GB-month) instead of $0.40 for a Secrets Manager secret; the key itself is $1 a month in total.

Only references (tenant id, agent id) travel through Step Functions; the secret is read here, by the
function that needs it, and never logged, returned or put in an event.
"""

from __future__ import annotations

import functools
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import SecretStr

from onboarding.core import aws
from onboarding.core.errors import CredentialChangedError, CredentialNotFoundError, error_code

Purpose = Literal["password", "refresh_token"]
PURPOSES: tuple[Purpose, ...] = ("password", "refresh_token")
_ALGORITHM = "AES256-GCM/KMS"
_NONCE_BYTES = 12

__all__ = [
    "CredentialChangedError",
    "CredentialNotFoundError",
    "CredentialStore",
    "KmsCredentialStore",
    "StoredSecret",
    "credential_store",
]


@dataclass(frozen=True)
class StoredSecret:
    """A secret as read, with the version of the item it was read from: `replace(..., if_version=...)`
    writes only over that same item (opaque; the sealed bytes, whose random nonce makes every seal unique)."""

    secret: SecretStr
    version: bytes


class CredentialStore(ABC):
    @abstractmethod
    def put(self, tenant_id: str, agent_id: str, secret: SecretStr, *, purpose: Purpose = "password") -> None:
        """Store (or replace) the agent's secret for this purpose."""

    @abstractmethod
    def replace(
        self,
        tenant_id: str,
        agent_id: str,
        secret: SecretStr,
        *,
        purpose: Purpose,
        if_version: bytes | None = None,
    ) -> None:
        """Replace the agent's secret for this purpose only while one is stored: CredentialNotFoundError
        once it was deleted (the agent removed, the attempt over), so a deleted secret never comes back.
        With `if_version` (a `StoredSecret.version`), only while the stored one is still the one read:
        CredentialChangedError when another was sealed meanwhile (the owner reconnected), which stands."""

    @abstractmethod
    def get(self, tenant_id: str, agent_id: str, *, purpose: Purpose = "password") -> SecretStr:
        """The agent's secret; CredentialNotFoundError when none is stored."""

    @abstractmethod
    def read(self, tenant_id: str, agent_id: str, *, purpose: Purpose = "password") -> StoredSecret:
        """The agent's secret with its version (for a conditional `replace`); CredentialNotFoundError when
        none is stored."""

    @abstractmethod
    def delete(self, tenant_id: str, agent_id: str) -> None:
        """Remove every secret of the agent (every purpose). Idempotent."""


def encryption_context(tenant_id: str, agent_id: str, purpose: Purpose) -> dict[str, str]:
    return {"tenantId": tenant_id, "agentId": agent_id, "purpose": purpose}


def item_key(tenant_id: str, agent_id: str, purpose: Purpose) -> dict[str, str]:
    """Partition per tenant, one item per agent and purpose (`:`, `/` and `#` in ids are harmless here)."""
    return {"pk": f"TENANT#{tenant_id}", "sk": f"AGENT#{agent_id}#{purpose}"}


class KmsCredentialStore(CredentialStore):
    """DynamoDB items sealed with KMS data keys (envelope encryption, AES-256-GCM from `cryptography`)."""

    def __init__(
        self, table_name: str, key_arn: str | None = None, *, kms: Any | None = None, ddb: Any | None = None
    ) -> None:
        self.table_name = table_name
        self.key_arn = key_arn or None  # only the functions that encrypt or decrypt have (and need) it
        self._kms = kms
        self._ddb = ddb

    @property
    def kms(self) -> Any:
        return self._kms or aws.client("kms")

    @property
    def ddb(self) -> Any:
        return self._ddb or aws.client("dynamodb")

    def _key(self) -> str:
        if not self.key_arn:
            raise RuntimeError("This credential store was built without a KMS key: it can only delete")
        return self.key_arn

    def put(self, tenant_id: str, agent_id: str, secret: SecretStr, *, purpose: Purpose = "password") -> None:
        self._seal(tenant_id, agent_id, secret, purpose)

    def replace(
        self,
        tenant_id: str,
        agent_id: str,
        secret: SecretStr,
        *,
        purpose: Purpose,
        if_version: bytes | None = None,
    ) -> None:
        condition: dict[str, Any] = {"ConditionExpression": "attribute_exists(pk)"}
        if if_version is not None:
            # The sealed bytes as read: a secret sealed since (another nonce, another ciphertext) differs.
            condition = {
                "ConditionExpression": "attribute_exists(pk) AND sealed = :read",
                "ExpressionAttributeValues": {":read": {"B": if_version}},
            }
        try:
            self._seal(tenant_id, agent_id, secret, purpose, **condition)
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
            if if_version is not None:
                raise CredentialChangedError(
                    f"The {purpose} of agent {agent_id} is not the one read any more (replaced or removed)"
                ) from error
            raise CredentialNotFoundError(f"No {purpose} stored for agent {agent_id} any more") from error

    def _seal(
        self, tenant_id: str, agent_id: str, secret: SecretStr, purpose: Purpose, **condition: Any
    ) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # only the sealing functions pay

        context = encryption_context(tenant_id, agent_id, purpose)
        data_key = self.kms.generate_data_key(KeyId=self._key(), KeySpec="AES_256", EncryptionContext=context)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(data_key["Plaintext"]).encrypt(
            nonce, secret.get_secret_value().encode("utf-8"), _aad(context)
        )
        del data_key["Plaintext"]
        self.ddb.put_item(
            TableName=self.table_name,
            Item={
                **{name: {"S": value} for name, value in item_key(tenant_id, agent_id, purpose).items()},
                "alg": {"S": _ALGORITHM},
                "keyId": {"S": str(data_key["KeyId"])},
                "dataKey": {"B": data_key["CiphertextBlob"]},
                "sealed": {"B": nonce + sealed},
            },
            **condition,
        )

    def get(self, tenant_id: str, agent_id: str, *, purpose: Purpose = "password") -> SecretStr:
        return self.read(tenant_id, agent_id, purpose=purpose).secret

    def read(self, tenant_id: str, agent_id: str, *, purpose: Purpose = "password") -> StoredSecret:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        found = self.ddb.get_item(
            TableName=self.table_name,
            Key={name: {"S": value} for name, value in item_key(tenant_id, agent_id, purpose).items()},
            ConsistentRead=True,
        ).get("Item")
        if found is None:
            raise CredentialNotFoundError(f"No {purpose} stored for agent {agent_id}")
        context = encryption_context(tenant_id, agent_id, purpose)
        # KeyId pins the key we trust: a ciphertext wrapped by any other key is refused by KMS.
        data_key = self.kms.decrypt(
            CiphertextBlob=found["dataKey"]["B"], EncryptionContext=context, KeyId=self._key()
        )
        blob = found["sealed"]["B"]
        plain = AESGCM(data_key["Plaintext"]).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(context))
        return StoredSecret(SecretStr(plain.decode("utf-8")), bytes(blob))

    def delete(self, tenant_id: str, agent_id: str) -> None:
        # DeleteItem of a missing key succeeds; no ReturnValues, so the deleting function never reads.
        for purpose in PURPOSES:
            self.ddb.delete_item(
                TableName=self.table_name,
                Key={name: {"S": value} for name, value in item_key(tenant_id, agent_id, purpose).items()},
            )


def _aad(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode("utf-8")


@functools.cache
def credential_store(table_name: str, key_arn: str | None = None) -> KmsCredentialStore:
    return KmsCredentialStore(table_name, key_arn)
