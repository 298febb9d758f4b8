"""The credential store: one Secrets Manager secret per agent, the password never shown."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from onboarding.credentials import CredentialNotFoundError, SecretsManagerCredentialStore


@pytest.fixture
def store(moto_aws: None) -> SecretsManagerCredentialStore:
    return SecretsManagerCredentialStore("mailbox-onboarding/test")


def test_a_password_is_stored_read_back_replaced_and_deleted(store: SecretsManagerCredentialStore) -> None:
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


def test_the_password_is_never_in_a_repr(store: SecretsManagerCredentialStore) -> None:
    store.put("demo", "A2", SecretStr("bank-grade-Pa55"))
    secret = store.get("demo", "A2")
    assert "bank-grade-Pa55" not in repr(secret)
    assert "bank-grade-Pa55" not in str(secret)


def test_tenants_have_separate_secrets(store: SecretsManagerCredentialStore) -> None:
    store.put("acme", "A3", SecretStr("acme-Pa55"))
    with pytest.raises(CredentialNotFoundError):
        store.get("demo", "A3")
