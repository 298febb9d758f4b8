"""The IAM contract: what each function's (and the state machine's) policy in template.yaml grants is
exactly what its code calls.

Every call is enforced as it runs (devstack/iam/enforce.py: a call the policy refuses fails the test
that made it). `calls.json` is what ran under enforcement across the whole test suite (recorded by
tests/contract/recorder.py, rewritten by a whole-suite run and failing it when it changes): here it
shows that every grant is used, and that every AWS call site of the code ran under a function's policy.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from devstack.iam.policy import (
    Request,
    Statement,
    allows,
    check,
    platform_policies,
    reference_problems,
    role_policies,
)
from tests.conftest import TEST_REFS
from tests.contract.call_sites import call_sites, reach

CALLS = Path(__file__).with_name("calls.json")
ACCOUNT_REGION = "us-east-1:123456789012"
IAM_REFS = {
    **TEST_REFS,
    "AgentsTable.Arn": f"arn:aws:dynamodb:{ACCOUNT_REGION}:table/{TEST_REFS['AgentsTable']}",
    "CredentialsTable.Arn": f"arn:aws:dynamodb:{ACCOUNT_REGION}:table/{TEST_REFS['CredentialsTable']}",
    "VerifyMailboxStateMachine.Name": TEST_REFS["VerifyMailboxStateMachine"].rsplit(":", 1)[-1],
    "VerifyMailboxFunction": "test-VerifyMailboxFunction",
    "VerifyMailboxFunction.Arn": f"arn:aws:lambda:{ACCOUNT_REGION}:function:test-VerifyMailboxFunction",
    "AgentEventsBus.Arn": f"arn:aws:events:{ACCOUNT_REGION}:event-bus/{TEST_REFS['AgentEventsBus']}",
}
FUNCTIONS = (
    "AddAgentFunction",
    "AuthCallbackFunction",
    "SendInviteFunction",
    "InviteEventsFunction",
    "VerifyMailboxFunction",
    "WorkflowEventsFunction",
    "PublishStatusFunction",
    "DispatchChecksFunction",
    "CheckMailboxFunction",
)
ROLES = (*FUNCTIONS, "VerifyMailboxStateMachine")


@pytest.fixture(scope="module")
def policies() -> dict[str, list[Statement]]:
    return role_policies(IAM_REFS)


@pytest.fixture(scope="module")
def recorded() -> dict[str, dict[str, list[Any]]]:
    record: dict[str, dict[str, list[Any]]] = json.loads(CALLS.read_text(encoding="utf-8"))
    return record


@pytest.fixture(scope="module")
def calls(recorded: dict[str, dict[str, list[Any]]]) -> dict[str, set[Request]]:
    return {who: {Request.from_json(row) for row in rows["calls"]} for who, rows in recorded.items()}


def test_each_function_is_granted_exactly_what_it_calls(
    policies: dict[str, list[Statement]], calls: dict[str, set[Request]]
) -> None:
    """Given the calls recorded across the suite, every call is allowed by the function's own policy,
    every granted action on every granted resource is used, and the IAM service reference accepts each."""
    assert set(policies) == set(ROLES)
    assert set(calls) == set(ROLES), "every function and the state machine ran under enforcement"
    report = check(policies, calls)
    assert report.ok, f"\n{report}"


def _without(statements: list[Statement], sid: str, action: str) -> list[Statement]:
    changed = []
    for statement in statements:
        if statement.sid == sid:
            statement = dataclasses.replace(
                statement, actions=tuple(a for a in statement.actions if a != action)
            )
        if statement.actions:
            changed.append(statement)
    return changed


def test_removing_any_single_permission_breaks_the_contract(
    policies: dict[str, list[Statement]], calls: dict[str, set[Request]]
) -> None:
    """Given the real policies, when any one granted action is taken away, then a recorded call is denied."""
    removed = 0
    for function, statements in policies.items():
        for statement in statements:
            for action in statement.actions:
                weaker = {**policies, function: _without(statements, statement.sid, action)}
                report = check(weaker, calls)
                assert report.denied.get(function), (
                    f"{function} still passes without {statement.sid}: {action}"
                )
                removed += 1
    assert removed >= 15


def test_the_verification_function_without_decrypt_is_denied(
    policies: dict[str, list[Statement]], calls: dict[str, set[Request]]
) -> None:
    weaker = {
        **policies,
        "VerifyMailboxFunction": _without(policies["VerifyMailboxFunction"], "UnsealSecrets", "kms:Decrypt"),
    }
    report = check(weaker, calls)
    denied = report.denied["VerifyMailboxFunction"]
    # Every unsealing is refused: the password's and the refresh token's, and nothing else
    assert {r.action for r in denied} == {"kms:Decrypt"}
    assert {dict(r.context)["kms:EncryptionContext:purpose"] for r in denied} == {
        ("password",),
        ("refresh_token",),
    }


def test_a_permission_nobody_uses_breaks_the_contract(
    policies: dict[str, list[Statement]], calls: dict[str, set[Request]]
) -> None:
    """Given a grant the code never exercises (the old secret deletion), the contract reports it."""
    extra = Statement(
        "Leftover", ("secretsmanager:DeleteSecret",), (f"arn:aws:secretsmanager:{ACCOUNT_REGION}:secret:x/*",)
    )
    report = check({**policies, "VerifyMailboxFunction": [*policies["VerifyMailboxFunction"], extra]}, calls)
    assert report.unused["VerifyMailboxFunction"] == [
        f"Leftover: secretsmanager:DeleteSecret on {extra.resources[0]}"
    ]


def test_the_service_reference_catches_resources_an_action_cannot_take() -> None:
    """SendTask* name no resource (task tokens): granted on a state machine ARN they would be refused."""
    on_machine = Statement("Resume", ("states:SendTaskSuccess",), (TEST_REFS["VerifyMailboxStateMachine"],))
    assert reference_problems(on_machine) == [
        f"Resume: states:SendTaskSuccess accepts only *, not {TEST_REFS['VerifyMailboxStateMachine']}"
    ]
    table_on_star = Statement("Wide", ("dynamodb:GetItem",), ("*",))
    assert "takes" in reference_problems(table_on_star)[0]
    assert reference_problems(Statement("Typo", ("dynamodb:GetItems",), ("*",))) == [
        "Typo: dynamodb:GetItems is not an IAM action"
    ]


# -- what the policies say about the secrets --------------------------------------------------------
CREDENTIALS = IAM_REFS["CredentialsTable.Arn"]
KEY = IAM_REFS["CredentialsKey.Arn"]
CONTEXT = (
    ("kms:EncryptionContext:agentId", ("A1",)),
    ("kms:EncryptionContext:purpose", ("password",)),
    ("kms:EncryptionContext:tenantId", ("demo",)),
    ("kms:EncryptionContextKeys", ("agentId", "purpose", "tenantId")),
)


def _allowed(policies: dict[str, list[Statement]], function: str, request: Request) -> bool:
    return any(allows(statement, request) for statement in policies[function])


@pytest.mark.parametrize("function", FUNCTIONS)
def test_only_the_verification_and_the_checker_can_read_a_secret(
    policies: dict[str, list[Statement]], function: str
) -> None:
    reads = [
        Request("dynamodb:GetItem", CREDENTIALS),
        Request("dynamodb:Query", CREDENTIALS),
        Request("dynamodb:Scan", CREDENTIALS),
        Request("dynamodb:DeleteItem", CREDENTIALS, (("dynamodb:ReturnValues", ("ALL_OLD",)),)),
        Request("kms:Decrypt", KEY, CONTEXT),
    ]
    can_read = [r.action for r in reads if _allowed(policies, function, r)]
    # The health checker signs in with the stored password or token, as verification does.
    readers = {"VerifyMailboxFunction", "CheckMailboxFunction"}
    expected = ["dynamodb:GetItem", "kms:Decrypt"] if function in readers else []
    assert can_read == expected


@pytest.mark.parametrize("function", FUNCTIONS)
def test_only_the_connect_page_can_seal_a_secret(policies: dict[str, list[Statement]], function: str) -> None:
    seal = Request("kms:GenerateDataKey", KEY, CONTEXT)
    assert _allowed(policies, function, seal) is (function == "AuthCallbackFunction")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_refresh_token_is_sealed_by_the_connect_page_and_resealed_only_by_verification_and_checks(
    policies: dict[str, list[Statement]], function: str
) -> None:
    """Microsoft rotates refresh tokens when they are used: verification may seal the new one, and only
    under the refresh-token purpose (the password test above shows it cannot seal a password)."""
    refresh_context = tuple(
        (key, ("refresh_token",)) if key == "kms:EncryptionContext:purpose" else (key, values)
        for key, values in CONTEXT
    )
    seal = Request("kms:GenerateDataKey", KEY, refresh_context)
    assert _allowed(policies, function, seal) is (
        function in {"AuthCallbackFunction", "VerifyMailboxFunction", "CheckMailboxFunction"}
    )


def test_keys_are_used_only_with_the_tenant_bound_encryption_context(
    policies: dict[str, list[Statement]],
) -> None:
    without_context = Request("kms:GenerateDataKey", KEY)
    other_context = Request(
        "kms:GenerateDataKey",
        KEY,
        (("kms:EncryptionContext:purpose", ("backup",)), ("kms:EncryptionContextKeys", ("purpose",))),
    )
    assert not _allowed(policies, "AuthCallbackFunction", without_context)
    assert not _allowed(policies, "AuthCallbackFunction", other_context)


def test_invites_go_out_only_from_the_configured_sender(policies: dict[str, list[Statement]]) -> None:
    identity = f"arn:aws:ses:{ACCOUNT_REGION}:identity/example.com"
    ours = Request("ses:SendEmail", identity, (("ses:FromAddress", (TEST_REFS["InviteSender"],)),))
    spoofed = Request("ses:SendEmail", identity, (("ses:FromAddress", ("ceo@example.com",)),))
    assert _allowed(policies, "SendInviteFunction", ours)
    assert not _allowed(policies, "SendInviteFunction", spoofed)


def test_what_sam_grants_for_the_platform_is_listed_apart() -> None:
    """Logs and traces (managed policies), the stream and the failure queue are used by Lambda itself."""
    platform = platform_policies()
    assert "AWSLambdaBasicExecutionRole" in platform["VerifyMailboxFunction"]
    assert "AWSLambdaDynamoDBExecutionRole" in platform["SendInviteFunction"]
    assert "sqs:SendMessage" in platform["InviteEventsFunction"]


def test_the_connect_page_puts_and_deletes_only_pending_microsoft_sign_ins(
    policies: dict[str, list[Statement]],
) -> None:
    agents = IAM_REFS["AgentsTable.Arn"]
    for action in ("dynamodb:PutItem", "dynamodb:DeleteItem"):
        an_agent = Request(action, agents, (("dynamodb:LeadingKeys", ("TENANT#<id>",)),))
        a_sign_in = Request(action, agents, (("dynamodb:LeadingKeys", ("OAUTH#<id>",)),))
        assert not _allowed(policies, "AuthCallbackFunction", an_agent)
        assert _allowed(policies, "AuthCallbackFunction", a_sign_in)


# -- every AWS call site of the code ran under enforcement ---------------------------------------------
def _unexercised(recorded: dict[str, dict[str, list[Any]]]) -> list[str]:
    """Call sites of the code that never ran under the policy of a function that reaches them."""
    missing = []
    for site in sorted(call_sites()):
        ran_by = [
            function
            for function in FUNCTIONS
            if site.module in reach(function) and str(site) in recorded.get(function, {}).get("sites", [])
        ]
        if not ran_by:
            missing.append(str(site))
    return missing


def test_every_aws_call_in_the_code_ran_under_the_policy_of_a_function_that_reaches_it(
    recorded: dict[str, dict[str, list[Any]]],
) -> None:
    """Given every AWS call site of layers/ and functions/ (found statically), each ran under enforcement,
    made by a function whose handler imports it, somewhere in the suite; and every site that ran is one the
    scan knows (so the scan misses no kind of call)."""
    assert _unexercised(recorded) == []
    ran = {site for rows in recorded.values() for site in rows["sites"]}
    assert ran - {str(site) for site in call_sites()} == set()


def test_a_call_site_no_function_ran_is_reported(recorded: dict[str, dict[str, list[Any]]]) -> None:
    """Given the record without what the verification function (and the checker, which unseals secrets too)
    ran, their call sites are reported: consuming the invite above all (the path whose missing permission no
    snapshot saw)."""
    unsealers = {"VerifyMailboxFunction", "CheckMailboxFunction"}
    without = {who: rows for who, rows in recorded.items() if who not in unsealers}
    missing = _unexercised(without)
    assert (
        "onboarding.invites.store:DynamoInviteRepository._consume_once dynamodb.TransactWriteItems" in missing
    )
    assert "onboarding.core.credentials:KmsCredentialStore.read kms.Decrypt" in missing


def test_the_scan_finds_client_calls_and_only_those() -> None:
    sites = {str(site) for site in call_sites()}
    assert "onboarding.agents.store:DynamoAgentRepository.create dynamodb.TransactWriteItems" in sites
    assert "onboarding.m365.oauth:client_secret_reader.<locals>.read secretsmanager.GetSecretValue" in sites
    assert "functions.auth_callback.app:Deps.csrf_key secretsmanager.GetSecretValue" in sites
    # AESGCM(...).decrypt is cryptography, SecretStr.get_secret_value is pydantic: no AWS call
    assert not any(s.endswith("kms.Decrypt") and "KmsCredentialStore.read" not in s for s in sites)
    assert not any("secretsmanager" in s and "Verification" in s for s in sites)
    # a function reaches what its handler imports, and not another function's handler
    assert "onboarding.invites.store" in reach("VerifyMailboxFunction")
    assert "functions.add_agent.app" not in reach("VerifyMailboxFunction")


def test_the_state_machine_invokes_the_verification_function_by_its_exact_arn(
    policies: dict[str, list[Statement]],
) -> None:
    """SAM's LambdaInvokePolicy grants `function:<name>*`: any function whose name starts with ours. The
    role may invoke the one version its definition names (`!Ref VerifyMailboxFunction.Version`), nothing
    else: not the unqualified function, not an alias, not a same-prefix function."""
    function = IAM_REFS["VerifyMailboxFunction.Arn"]
    for arn, allowed in (
        (f"{function}:1", True),
        (function, False),
        (f"{function}Evil", False),
        (f"{function}Evil:1", False),
        (f"{function}:live", False),
    ):
        assert (
            _allowed(policies, "VerifyMailboxStateMachine", Request("lambda:InvokeFunction", arn)) is allowed
        )


@pytest.mark.parametrize(
    ("function", "prefixes"),
    [
        ("AddAgentFunction", {"TENANT#"}),
        ("AuthCallbackFunction", {"TENANT#", "INVITE#", "OAUTH#"}),
        ("SendInviteFunction", {"TENANT#", "INVITE#"}),
        ("InviteEventsFunction", {"TENANT#"}),
        ("VerifyMailboxFunction", {"TENANT#", "INVITE#"}),
        ("WorkflowEventsFunction", {"TENANT#"}),
    ],
)
def test_each_function_touches_agents_table_items_only_under_its_own_key_prefixes(
    policies: dict[str, list[Statement]], function: str, prefixes: set[str]
) -> None:
    """dynamodb:LeadingKeys: an item under another prefix is refused, whatever the action."""
    agents = IAM_REFS["AgentsTable.Arn"]
    actions = {a for s in policies[function] for a in s.actions if a.startswith("dynamodb:")}
    for prefix in ("TENANT#", "INVITE#", "OAUTH#", "OTHER#"):
        context = (("dynamodb:LeadingKeys", (f"{prefix}x",)),)
        can = any(_allowed(policies, function, Request(a, agents, context)) for a in actions)
        assert can is (prefix in prefixes), f"{function} on {prefix}"


def test_the_status_publisher_may_put_only_status_events_on_the_stacks_bus(
    policies: dict[str, list[Statement]],
) -> None:
    """events:PutEvents on the stack's bus, for the `Agent Status Changed` events of our source only: not
    on the account's default bus (other rules listen there), not another source, not another detail-type."""
    bus = IAM_REFS["AgentEventsBus.Arn"]
    default = f"arn:aws:events:{ACCOUNT_REGION}:event-bus/default"

    def put(resource: str, source: str, detail_type: str) -> bool:
        context = (("events:detail-type", (detail_type,)), ("events:source", (source,)))
        return _allowed(policies, "PublishStatusFunction", Request("events:PutEvents", resource, context))

    assert put(bus, "mailbox-onboarding", "Agent Status Changed")
    assert not put(default, "mailbox-onboarding", "Agent Status Changed")
    assert not put(bus, "aws.states", "Agent Status Changed")
    assert not put(bus, "mailbox-onboarding", "Agent Removed")
    others = [f for f in FUNCTIONS if f != "PublishStatusFunction"]
    assert not any(
        _allowed(policies, f, Request("events:PutEvents", bus, (("events:source", ("mailbox-onboarding",)),)))
        for f in others
    )
