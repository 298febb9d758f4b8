"""The credential store: each secret sealed with its own KMS data key (AES-256-GCM), bound by the encryption
context {tenantId, agentId, purpose}; the plaintext is never stored and never shown."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag
from pydantic import SecretStr

from onboarding.core.credentials import CredentialChangedError, CredentialNotFoundError, KmsCredentialStore
from tests.conftest import CREDENTIALS_TABLE, stored_secrets


@pytest.fixture
def store(key_arn: str) -> KmsCredentialStore:
    return KmsCredentialStore(CREDENTIALS_TABLE, key_arn)


def test_a_password_is_stored_read_back_replaced_and_deleted(store: KmsCredentialStore) -> None:
    store.put("demo", "A1", SecretStr("first-Pa55"))
    assert store.get("demo", "A1").get_secret_value() == "first-Pa55"
    store.put("demo", "A1", SecretStr("second-Pa55"))
    assert store.get("demo", "A1").get_secret_value() == "second-Pa55"
    store.delete("demo", "A1")
    store.delete("demo", "A1")  # deleting twice is fine
    with pytest.raises(CredentialNotFoundError):
        store.get("demo", "A1")
    store.put("demo", "A1", SecretStr("third-Pa55"))  # a retry after a failed attempt
    assert store.get("demo", "A1").get_secret_value() == "third-Pa55"


def test_a_conditional_replace_writes_only_over_the_secret_it_read(store: KmsCredentialStore) -> None:
    """Given a refresh token read by a check, when the owner seals a new one before the check writes its
    rotated token, then the check's replace is refused and the owner's token stands."""
    store.put("demo", "A6", SecretStr("old-t0ken"), purpose="refresh_token")
    read = store.read("demo", "A6", purpose="refresh_token")
    store.put("demo", "A6", SecretStr("owners-new-t0ken"), purpose="refresh_token")

    with pytest.raises(CredentialChangedError):
        store.replace(
            "demo", "A6", SecretStr("rotated-t0ken"), purpose="refresh_token", if_version=read.version
        )

    assert store.get("demo", "A6", purpose="refresh_token").get_secret_value() == "owners-new-t0ken"


def test_a_conditional_replace_over_the_secret_read_succeeds_and_changes_its_version(
    store: KmsCredentialStore,
) -> None:
    store.put("demo", "A7", SecretStr("old-t0ken"), purpose="refresh_token")
    read = store.read("demo", "A7", purpose="refresh_token")

    store.replace("demo", "A7", SecretStr("rotated-t0ken"), purpose="refresh_token", if_version=read.version)

    now = store.read("demo", "A7", purpose="refresh_token")
    assert now.secret.get_secret_value() == "rotated-t0ken"
    assert now.version != read.version
    # The version read before is stale now: a second writer holding it is refused.
    with pytest.raises(CredentialChangedError):
        store.replace("demo", "A7", SecretStr("other"), purpose="refresh_token", if_version=read.version)


def test_a_conditional_replace_of_a_removed_secret_creates_nothing(store: KmsCredentialStore) -> None:
    store.put("demo", "A8", SecretStr("old-t0ken"), purpose="refresh_token")
    read = store.read("demo", "A8", purpose="refresh_token")
    store.delete("demo", "A8")

    with pytest.raises(CredentialNotFoundError):
        store.replace("demo", "A8", SecretStr("rotated"), purpose="refresh_token", if_version=read.version)

    assert stored_secrets("A8") == []


def test_purposes_are_separate_and_delete_removes_every_one(store: KmsCredentialStore) -> None:
    store.put("demo", "A4", SecretStr("the-Pa55"))
    store.put("demo", "A4", SecretStr("refresh-t0ken"), purpose="refresh_token")
    assert store.get("demo", "A4").get_secret_value() == "the-Pa55"
    assert store.get("demo", "A4", purpose="refresh_token").get_secret_value() == "refresh-t0ken"
    store.delete("demo", "A4")
    assert stored_secrets("A4") == []


def test_nothing_stored_is_the_plaintext(store: KmsCredentialStore) -> None:
    store.put("demo", "A2", SecretStr("bank-grade-Pa55"))
    (item,) = stored_secrets("A2")
    raw = repr(item).encode() + b"".join(v.get("B", b"") for v in item.values())
    assert b"bank-grade-Pa55" not in raw
    assert set(item) == {"pk", "sk", "alg", "keyId", "dataKey", "sealed"}
    secret = store.get("demo", "A2")
    assert "bank-grade-Pa55" not in repr(secret)
    assert "bank-grade-Pa55" not in str(secret)


def test_tenant_ids_with_any_characters_are_fine(store: KmsCredentialStore) -> None:
    """Secrets Manager names could not hold a `:`; tenant ids may."""
    store.put("org:acme/eu#1", "A5", SecretStr("colon-Pa55"))
    assert store.get("org:acme/eu#1", "A5").get_secret_value() == "colon-Pa55"
    with pytest.raises(CredentialNotFoundError):
        store.get("org:acme/eu", "A5")


def _move(item: dict, tenant: str, agent: str, purpose: str = "password") -> None:
    moved = {**item, "pk": {"S": f"TENANT#{tenant}"}, "sk": {"S": f"AGENT#{agent}#{purpose}"}}
    boto3.client("dynamodb").put_item(TableName=CREDENTIALS_TABLE, Item=moved)


@pytest.mark.parametrize(
    ("tenant", "agent", "purpose"),
    [
        pytest.param("acme", "A3", "password", id="to-another-tenant"),
        pytest.param("demo", "B3", "password", id="to-another-agent"),
        pytest.param("demo", "A3", "refresh_token", id="to-another-purpose"),
    ],
)
def test_a_ciphertext_moved_elsewhere_does_not_decrypt(
    store: KmsCredentialStore, tenant: str, agent: str, purpose: str
) -> None:
    """Given agent A3's sealed password copied under another owner, when that owner's secret is read,
    then KMS refuses to unwrap the data key (the encryption context differs)."""
    store.put("demo", "A3", SecretStr("demo-Pa55"))
    (item,) = stored_secrets("A3")
    _move(item, tenant, agent, purpose)
    with pytest.raises(ClientError) as raised:
        store.get(tenant, agent, purpose=purpose)  # type: ignore[arg-type]
    assert raised.value.response["Error"]["Code"] == "InvalidCiphertextException"


def test_a_ciphertext_with_another_agents_data_key_fails_its_integrity_check(
    store: KmsCredentialStore,
) -> None:
    """Given B's sealed bytes paired with A's (valid) wrapped data key, AES-GCM refuses them."""
    store.put("demo", "A6", SecretStr("a-Pa55"))
    store.put("demo", "B6", SecretStr("b-Pa55"))
    (a_item,) = stored_secrets("A6")
    (b_item,) = stored_secrets("B6")
    boto3.client("dynamodb").put_item(
        TableName=CREDENTIALS_TABLE, Item={**a_item, "sealed": b_item["sealed"]}
    )
    with pytest.raises(InvalidTag):
        store.get("demo", "A6")


def test_a_data_key_of_another_kms_key_is_refused(store: KmsCredentialStore) -> None:
    other = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    KmsCredentialStore(CREDENTIALS_TABLE, other).put("demo", "A7", SecretStr("other-key-Pa55"))
    with pytest.raises(ClientError):
        store.get("demo", "A7")


def test_a_store_without_a_key_can_only_delete(key_arn: str) -> None:
    KmsCredentialStore(CREDENTIALS_TABLE, key_arn).put("demo", "A8", SecretStr("x-Pa55"))
    deleter = KmsCredentialStore(CREDENTIALS_TABLE)
    with pytest.raises(RuntimeError):
        deleter.get("demo", "A8")
    deleter.delete("demo", "A8")
    assert stored_secrets("A8") == []
