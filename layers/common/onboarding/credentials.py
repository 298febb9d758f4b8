"""The mailbox password, kept as a Secrets Manager secret per agent and handled as a SecretStr.

Only references (tenant id, agent id) travel through Step Functions; the password is read here, by the
function that needs it, and never logged, returned or put in an event.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from typing import Any

from botocore.exceptions import ClientError
from pydantic import SecretStr

from onboarding import aws
from onboarding.errors import CredentialNotFoundError

__all__ = ["CredentialNotFoundError", "CredentialStore", "SecretsManagerCredentialStore", "credential_store"]


class CredentialStore(ABC):
    @abstractmethod
    def put(self, tenant_id: str, agent_id: str, password: SecretStr) -> None: ...

    @abstractmethod
    def get(self, tenant_id: str, agent_id: str) -> SecretStr: ...

    @abstractmethod
    def delete(self, tenant_id: str, agent_id: str) -> None: ...


class SecretsManagerCredentialStore(CredentialStore):
    def __init__(self, prefix: str, kms_key_id: str | None = None, client: Any | None = None) -> None:
        self.prefix = prefix.rstrip("/")
        self.kms_key_id = kms_key_id or None
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("secretsmanager")

    def name(self, tenant_id: str, agent_id: str) -> str:
        return f"{self.prefix}/{tenant_id}/{agent_id}"

    def put(self, tenant_id: str, agent_id: str, password: SecretStr) -> None:
        """Create the agent's secret (the usual case: one call), or give an existing one a new value."""
        value = json.dumps({"password": password.get_secret_value()})
        name = self.name(tenant_id, agent_id)
        extra = {"KmsKeyId": self.kms_key_id} if self.kms_key_id else {}
        try:
            self.client.create_secret(
                Name=name,
                SecretString=value,
                Description="Exchange mailbox password of one onboarded agent",
                Tags=[{"Key": "tenantId", "Value": tenant_id}, {"Key": "agentId", "Value": agent_id}],
                **extra,
            )
            return
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "InvalidRequestException":
                # Deleted a moment ago (a failed attempt) and not gone yet: bring it back, then overwrite.
                self.client.restore_secret(SecretId=name)
            elif code != "ResourceExistsException":
                raise
        self.client.put_secret_value(SecretId=name, SecretString=value)

    def get(self, tenant_id: str, agent_id: str) -> SecretStr:
        try:
            response = self.client.get_secret_value(SecretId=self.name(tenant_id, agent_id))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise CredentialNotFoundError(f"No credential stored for agent {agent_id}") from None
            raise
        return SecretStr(json.loads(response["SecretString"])["password"])

    def delete(self, tenant_id: str, agent_id: str) -> None:
        try:
            self.client.delete_secret(
                SecretId=self.name(tenant_id, agent_id), ForceDeleteWithoutRecovery=True
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise


@functools.cache
def credential_store(prefix: str, kms_key_id: str | None = None) -> SecretsManagerCredentialStore:
    return SecretsManagerCredentialStore(prefix, kms_key_id)
