"""Each function's settings: validated once at cold start from exactly the environment template.yaml gives
it; a missing or malformed variable fails the init with a message naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from onboarding import settings
from tests.conftest import template_environment

ROOT = Path(__file__).resolve().parents[2]
MODELS: dict[str, type[settings._FunctionSettings]] = {
    "AddAgentFunction": settings.AgentsApiSettings,
    "AuthCallbackFunction": settings.AuthCallbackSettings,
    "SendInviteFunction": settings.SendInviteSettings,
    "InviteEventsFunction": settings.InviteEventsSettings,
    "VerifyMailboxFunction": settings.VerifyMailboxSettings,
    "WorkflowEventsFunction": settings.WorkflowEventsSettings,
    "PublishStatusFunction": settings.PublishStatusSettings,
    "DispatchChecksFunction": settings.DispatchChecksSettings,
    "CheckMailboxFunction": settings.CheckMailboxSettings,
}


def _read(model: type[settings._FunctionSettings]) -> set[str]:
    return {name.upper() for name in model.model_fields}


@pytest.mark.parametrize("function", MODELS)
def test_the_template_gives_each_function_every_variable_it_reads(function: str) -> None:
    env = template_environment(function)
    assert _read(MODELS[function]) <= set(env), "a variable read but not given by the template"
    MODELS[function].from_environ(env)  # the template's values (defaults included) are valid


@pytest.mark.parametrize("function", MODELS)
def test_the_template_gives_each_function_only_what_it_reads(function: str) -> None:
    given = {name for name in template_environment(function) if not name.startswith("POWERTOOLS_")}
    assert given <= _read(MODELS[function]), "a variable given by the template but read by no setting"


@pytest.mark.parametrize(
    ("function", "variable"),
    [(function, variable) for function, model in MODELS.items() for variable in sorted(_read(model))],
)
def test_a_missing_variable_fails_naming_it(function: str, variable: str) -> None:
    env = {k: v for k, v in template_environment(function).items() if k != variable}
    with pytest.raises(settings.ConfigurationError, match=rf"{variable}: not set"):
        MODELS[function].from_environ(env)


@pytest.mark.parametrize(
    ("function", "variable", "value"),
    [
        ("AddAgentFunction", "STATE_MACHINE_ARN", "verify-mailbox"),
        ("AddAgentFunction", "DEFAULT_PAGE_SIZE", "1000"),
        # the connect page starts the alias: the unqualified ARN would run the latest definition
        ("AuthCallbackFunction", "STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:v"),
        ("AuthCallbackFunction", "CREDENTIALS_KEY_ARN", "alias/credentials"),
        ("AuthCallbackFunction", "DASHBOARD_URL", "app.example.com"),
        ("SendInviteFunction", "INVITE_SENDER", "Team <invites@example.com>"),
        ("VerifyMailboxFunction", "EXCHANGE_VERIFY_TIMEOUT", "0"),
        ("AuthCallbackFunction", "M365_AUTHORITY_HOST", "http://login.microsoftonline.com"),
        ("AuthCallbackFunction", "M365_FLOW_TTL_SECONDS", "30"),
        ("AuthCallbackFunction", "M365_SIGN_IN_HOST", "http://login.example.com"),
        ("AuthCallbackFunction", "M365_SIGN_IN_HOST", "login.microsoftonline.com"),
        ("AuthCallbackFunction", "M365_TENANT", ""),
        ("VerifyMailboxFunction", "GRAPH_BASE_URL", "graph.microsoft.com"),
        ("VerifyMailboxFunction", "M365_TOKEN_TIMEOUT", "0"),
        ("VerifyMailboxFunction", "GRAPH_BUDGET", "soon"),
    ],
)
def test_a_malformed_variable_fails_naming_it(function: str, variable: str, value: str) -> None:
    env = {**template_environment(function), variable: value}
    with pytest.raises(settings.ConfigurationError, match=rf"{variable}: "):
        MODELS[function].from_environ(env)


def test_invite_links_need_a_base_url() -> None:
    env = {**template_environment("SendInviteFunction"), "PUBLIC_BASE_URL": "", "API_BASE_URL": ""}
    with pytest.raises(settings.ConfigurationError, match="PUBLIC_BASE_URL or API_BASE_URL"):
        settings.SendInviteSettings.from_environ(env)


def test_the_exchange_code_gets_a_typed_config_not_the_environment() -> None:
    env = {
        **template_environment("VerifyMailboxFunction"),
        "EXCHANGE_ALLOW_NETWORKS": "127.0.0.0/8, ::1/128",
        "EXCHANGE_CA_BUNDLE": "/tmp/ca.pem",
        "EXCHANGE_DISCOVERY_TIMEOUT": "4",
    }
    config = settings.VerifyMailboxSettings.from_environ(env).exchange
    assert (config.discovery_timeout, config.allow_networks, config.ca_bundle) == (
        4,
        ("127.0.0.0/8", "::1/128"),
        "/tmp/ca.pem",
    )
    production = settings.VerifyMailboxSettings.from_environ(
        template_environment("VerifyMailboxFunction")
    ).exchange
    assert (production.allow_networks, production.ca_bundle) == ((), None)


@pytest.mark.parametrize("function", ["AuthCallbackFunction", "VerifyMailboxFunction"])
def test_a_microsoft_client_id_needs_its_secret(function: str) -> None:
    env = {
        **template_environment(function),
        "M365_CLIENT_ID": "5d3c7f1a-9b2e-4c8d-a6f0-1e2b3c4d5e6f",
        "M365_CLIENT_SECRET_ARN": "",
    }
    with pytest.raises(settings.ConfigurationError, match=r"M365_CLIENT_SECRET_ARN: .*M365_CLIENT_ID is set"):
        MODELS[function].from_environ(env)


def test_the_microsoft_365_code_gets_a_typed_config_not_the_environment() -> None:
    sim = {
        "M365_CLIENT_ID": "5d3c7f1a-9b2e-4c8d-a6f0-1e2b3c4d5e6f",
        "M365_CLIENT_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:entra-AbCdEf",
        "M365_AUTHORITY_HOST": "https://127.0.0.1:4431",
        "M365_CA_BUNDLE": "/tmp/ca.pem",
        "GRAPH_BASE_URL": "https://127.0.0.1:4432",
    }
    verify = settings.VerifyMailboxSettings.from_environ(
        {**template_environment("VerifyMailboxFunction"), **sim, "GRAPH_BUDGET": "5"}
    ).m365
    assert (verify.enabled, verify.authority, verify.graph_base_url, verify.verify, verify.graph_budget) == (
        True,
        "https://127.0.0.1:4431/organizations",
        "https://127.0.0.1:4432",
        "/tmp/ca.pem",
        5,
    )
    connect = settings.AuthCallbackSettings.from_environ(
        {**template_environment("AuthCallbackFunction"), **sim, "M365_FLOW_TTL_SECONDS": "120"}
    ).m365
    assert (connect.client_secret_arn, connect.flow_ttl_seconds, connect.token_timeout) == (
        sim["M365_CLIENT_SECRET_ARN"],
        120,
        10,
    )
    # Where browsers sign in: the authority host, unless told (the local stack's own origin, plain HTTP on
    # loopback only)
    assert connect.admin_consent_url("contoso.com", "https://x/cb", "s").startswith(
        "https://127.0.0.1:4431/contoso.com/adminconsent?client_id="
    )
    local = settings.AuthCallbackSettings.from_environ(
        {
            **template_environment("AuthCallbackFunction"),
            **sim,
            "M365_SIGN_IN_HOST": "http://127.0.0.1:3000/_local/login",
        }
    ).m365
    assert local.admin_consent_url("contoso.com", "https://x/cb", "s").startswith(
        "http://127.0.0.1:3000/_local/login/contoso.com/adminconsent?client_id="
    )
    production = settings.AuthCallbackSettings.from_environ(template_environment("AuthCallbackFunction")).m365
    assert (production.enabled, production.authority, production.verify) == (
        False,
        "https://login.microsoftonline.com/organizations",
        True,
    )


def test_a_function_without_a_variable_fails_its_cold_start_in_the_local_stack() -> None:
    """Given the dashboard API's template environment without STATE_MACHINE_ARN (and every other
    function's variables present in the process), when the local stack starts it, its import fails
    naming the variable, as the init would on AWS."""
    script = (
        "from devstack.runtime import runners_from_template\n"
        "from tests.conftest import template_environment\n"
        "envs = {f: template_environment(f) for f in "
        f"{tuple(MODELS)!r}}}\n"
        "del envs['AddAgentFunction']['STATE_MACHINE_ARN']\n"
        "runners_from_template(environments=envs)['AddAgentFunction'].load()\n"
    )
    env = {
        **os.environ,  # holds the union of every function's variables (tests/conftest.py)
        "PYTHONPATH": f"{ROOT / 'layers' / 'common'}{os.pathsep}{ROOT}",
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "ConfigurationError: AgentsApiSettings: STATE_MACHINE_ARN: not set" in done.stderr


def test_an_invite_sender_with_a_display_name_is_refused_at_deploy_and_at_cold_start() -> None:
    """The upgrade that split `InviteSender` (an address only) and `InviteSenderName`: an old
    "Name <address>" value fails the deployment with CloudFormation's constraint message, and a function
    given it anyway fails its cold start saying where the name goes."""
    import re

    from devstack import template as tpl

    parameter = tpl.load_template()["Parameters"]["InviteSender"]
    assert re.fullmatch(parameter["AllowedPattern"], "invites@example.com")
    assert not re.fullmatch(parameter["AllowedPattern"], "Team <invites@example.com>")
    assert "InviteSenderName" in parameter["ConstraintDescription"]
    env = {**template_environment("SendInviteFunction"), "INVITE_SENDER": "Team <invites@example.com>"}
    with pytest.raises(settings.ConfigurationError) as raised:
        settings.SendInviteSettings.from_environ(env)
    assert str(raised.value) == (
        "SendInviteSettings: INVITE_SENDER: must be the sender's address only, e.g. invites@example.com; "
        "its display name is INVITE_SENDER_NAME (template parameters InviteSender and InviteSenderName)"
    )
