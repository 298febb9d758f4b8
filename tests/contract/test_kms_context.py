"""The KMS statements of template.yaml, evaluated as IAM does (devstack/iam/policy.py): each function may use
the credentials key only with the whole encryption context `{tenantId, agentId, purpose}` and its purposes."""

from __future__ import annotations

import pytest

from devstack.iam.policy import Request, Statement, allows, role_policies
from tests.contract.test_iam_contract import IAM_REFS

KEY = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
FULL = {"tenantId": "demo", "agentId": "01HZY0000000000000000000AA"}


def _request(action: str, context: dict[str, str]) -> Request:
    keys: dict[str, tuple[str, ...]] = {f"kms:EncryptionContext:{k}": (v,) for k, v in context.items()}
    if context:
        keys["kms:EncryptionContextKeys"] = tuple(sorted(context))
    return Request(action, KEY, tuple(sorted(keys.items())))


def _allowed(statements: list[Statement], action: str, context: dict[str, str]) -> bool:
    return any(allows(s, _request(action, context)) for s in statements)


@pytest.fixture(scope="module")
def policies() -> dict[str, list[Statement]]:
    return role_policies({**IAM_REFS, "CredentialsKey.Arn": KEY})


# What each function may do with the key, by purpose (anything else is refused).
GRANTS = {
    ("AuthCallbackFunction", "kms:GenerateDataKey"): {"password", "refresh_token"},
    ("VerifyMailboxFunction", "kms:Decrypt"): {"password", "refresh_token"},
    ("VerifyMailboxFunction", "kms:GenerateDataKey"): {"refresh_token"},
}


@pytest.mark.parametrize(("function", "action"), sorted(GRANTS))
def test_the_key_is_used_only_with_the_whole_context_and_the_functions_purposes(
    policies: dict[str, list[Statement]], function: str, action: str
) -> None:
    statements = policies[function]
    for purpose in ("password", "refresh_token", "other"):
        assert _allowed(statements, action, {**FULL, "purpose": purpose}) is (
            purpose in GRANTS[function, action]
        )
    purpose = sorted(GRANTS[function, action])[0]
    refused = [
        {"purpose": purpose},  # no tenant, no agent
        {"tenantId": "demo", "purpose": purpose},
        {"agentId": FULL["agentId"], "purpose": purpose},
        dict(FULL),  # no purpose
        {},  # no context at all
        {**FULL, "purpose": purpose, "extra": "x"},
    ]
    for context in refused:
        assert not _allowed(statements, action, context), context


@pytest.mark.parametrize("function", ["AddAgentFunction", "SendInviteFunction", "InviteEventsFunction"])
def test_the_other_functions_cannot_use_the_key(policies: dict[str, list[Statement]], function: str) -> None:
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert not _allowed(policies[function], action, {**FULL, "purpose": "password"})
