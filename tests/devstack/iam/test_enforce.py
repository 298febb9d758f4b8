"""IAM enforced on the calls a function makes (devstack/iam/enforce.py), as AWS would refuse them."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import SecretStr

from devstack import template as tpl
from devstack.iam.enforce import acting_as
from onboarding import deps
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core import aws
from onboarding.invites.store import DynamoInviteRepository
from tests import lifecycle
from tests.conftest import CREDENTIALS_TABLE, STATE_MACHINE_ARN, TABLE_NAME

AGENTS_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE_NAME}"


def _denied(error: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = error.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def test_a_call_the_policy_refuses_fails_as_aws_fails_it(repo: DynamoAgentRepository) -> None:
    # Given the bounce handler's role, which may read and update agents but never put one
    item = {"pk": {"S": "TENANT#demo"}, "sk": {"S": "AGENT#a1"}}
    # When it puts an item
    with (
        acting_as("InviteEventsFunction", session="test-InviteEventsFunction"),
        pytest.raises(ClientError) as error,
    ):
        aws.client("dynamodb").put_item(TableName=TABLE_NAME, Item=item)
    # Then DynamoDB's AccessDeniedException, in AWS's words, and nothing was written
    assert _denied(error) == (
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/test-InviteEventsFunctionRole/test-InviteEventsFunction "
        f"is not authorized to perform: dynamodb:PutItem on resource: {AGENTS_ARN} because no identity-based "
        "policy allows the dynamodb:PutItem action",
        400,
    )
    assert repo.get_item("demo", "a1") is None


def test_leading_keys_hold_a_function_to_its_own_items(repo: DynamoAgentRepository) -> None:
    invite_repo = DynamoInviteRepository(TABLE_NAME, aws.client("dynamodb"))
    # Given an agent and its invite
    agent = lifecycle.add(repo)
    # When the dashboard API reads the agent, then an invite
    with acting_as("AddAgentFunction"):
        assert repo.get_item("demo", agent.agent_id) is not None
        with pytest.raises(ClientError) as error:
            invite_repo.get("0" * 64)
    # Then the invite's key (INVITE#...) is not one its policy allows
    code, message, _ = _denied(error)
    assert code == "AccessDeniedException"
    assert f"dynamodb:GetItem on resource: {AGENTS_ARN} " in message


def test_kms_is_asked_with_the_calls_own_encryption_context(key_arn: str) -> None:
    """The verification function may seal a rotated refresh token, never a password: the purpose in the
    encryption context of the very call decides."""
    store = deps.credential_store(CREDENTIALS_TABLE, key_arn)
    with acting_as("VerifyMailboxFunction"):
        store.put("demo", "a1", SecretStr("rotated"), purpose="refresh_token")
        with pytest.raises(ClientError) as error:
            store.put("demo", "a1", SecretStr("a password"), purpose="password")
    code, message, status = _denied(error)
    assert (code, status) == ("AccessDeniedException", 400)
    assert f"kms:GenerateDataKey on resource: {key_arn} " in message
    assert "a password" not in message


@pytest.mark.parametrize(
    ("service", "call", "status"),
    [
        ("stepfunctions", lambda c: c.start_execution(stateMachineArn=STATE_MACHINE_ARN, input="{}"), 400),
        ("kms", lambda c: c.decrypt(CiphertextBlob=b"x" * 64, KeyId=os.environ["CREDENTIALS_KEY_ARN"]), 400),
        (
            "secretsmanager",
            lambda c: c.get_secret_value(
                SecretId="arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf"
            ),
            400,
        ),
        (
            "sesv2",
            lambda c: c.send_email(
                FromEmailAddress="a@example.com",
                Destination={"ToAddresses": ["b@example.com"]},
                Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}},
            ),
            403,
        ),
        ("lambda", lambda c: c.invoke(FunctionName="test-VerifyMailboxFunction", Payload=b"{}"), 403),
    ],
)
def test_each_service_refuses_in_its_own_protocol(
    moto_aws: None, service: str, call: Any, status: int
) -> None:
    """The dashboard API may do none of these: each fails with AccessDeniedException, as botocore parses
    that service's answer (JSON services 400, REST ones 403)."""
    with acting_as("AddAgentFunction"), pytest.raises(ClientError) as error:
        call(aws.client(service))
    code, message, got = _denied(error)
    assert (code, got) == ("AccessDeniedException", status)
    assert message.startswith("User: arn:aws:sts::123456789012:assumed-role/test-AddAgentFunctionRole/")


def test_an_unknown_identity_is_refused(repo: DynamoAgentRepository) -> None:
    # Given a role template.yaml does not have
    with acting_as("NoSuchFunction"), pytest.raises(ClientError) as error:
        repo.get_item("demo", "a1")
    assert _denied(error)[0] == "AccessDeniedException"
    # And shipped code running as no function at all (a thread of its own, no test on its stack)
    with ThreadPoolExecutor(max_workers=1) as pool, pytest.raises(ClientError) as error:
        pool.submit(repo.get_item, "demo", "a1").result()
    code, message, _ = _denied(error)
    assert code == "AccessDeniedException"
    assert "assumed-role/unknown/unknown" in message


def test_the_tests_own_set_up_is_the_accounts(repo: DynamoAgentRepository) -> None:
    """A test's set-up and assertions (our repositories called from the test) are the account's, not a
    function's: adding an agent is a transaction no function but the dashboard API may make."""
    agent = lifecycle.add(repo)
    assert repo.get_item("demo", agent.agent_id) is not None


def test_the_connect_page_may_start_the_workflow_only_through_its_alias(moto_aws: None) -> None:
    """Step Functions authorizes a start through an alias on the state machine's own ARN, with the alias in
    `states:StateMachineQualifier`; the policy names `live`: a start that bypasses the alias is refused."""
    sfn = aws.client("stepfunctions")
    arn = tpl.create_state_machine(
        sfn, "VerifyMailboxStateMachine", {"VerifyMailboxFunction.Arn": "x"}, name="verify-mailbox"
    )
    assert arn == STATE_MACHINE_ARN
    with acting_as("AuthCallbackFunction"):
        started = sfn.start_execution(stateMachineArn=f"{arn}:live", name="a-1", input="{}")
        with pytest.raises(ClientError) as unqualified:
            sfn.start_execution(stateMachineArn=arn, name="a-2", input="{}")
        with pytest.raises(ClientError) as version:
            sfn.start_execution(stateMachineArn=f"{arn}:1", name="a-3", input="{}")
    assert started["executionArn"].endswith(":execution:verify-mailbox:a-1")
    for error in (unqualified, version):
        code, message, _ = _denied(error)
        assert code == "AccessDeniedException"
        assert f"states:StartExecution on resource: {arn} " in message
