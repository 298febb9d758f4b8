"""What each handler imports at cold start, in a fresh interpreter with its own template environment:
code that serves another function stays out (what `bench/cold_start.py` measures in instructions)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import template_environment

REPO = Path(__file__).resolve().parents[2]


def _imported(module: str, logical_id: str, watched: tuple[str, ...]) -> dict[str, bool]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "layers" / "common"), str(REPO)]),
        "AWS_DEFAULT_REGION": "us-east-1",
        **template_environment(logical_id),
    }
    code = f"import sys, {module}; print(*[m in sys.modules for m in {watched!r}])"
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return dict(zip(watched, (word == "True" for word in out.stdout.split()), strict=True))


@pytest.mark.parametrize(
    ("module", "logical_id"),
    [
        ("functions.add_agent.app", "AddAgentFunction"),
        ("functions.auth_callback.app", "AuthCallbackFunction"),
        ("functions.publish_status.app", "PublishStatusFunction"),
    ],
)
def test_functions_that_send_no_mail_do_not_import_the_mail_code(module: str, logical_id: str) -> None:
    assert _imported(module, logical_id, ("onboarding.invites.mailer",)) == {
        "onboarding.invites.mailer": False
    }


def test_the_invite_sender_imports_the_mail_code() -> None:
    # (the watch above would pass vacuously if the module were renamed)
    imported = _imported("functions.send_invite.app", "SendInviteFunction", ("onboarding.invites.mailer",))
    assert imported == {"onboarding.invites.mailer": True}


@pytest.mark.parametrize(
    ("module", "logical_id"),
    [
        ("functions.send_invite.app", "SendInviteFunction"),
        ("functions.send_invite.bounces", "InviteEventsFunction"),
        ("functions.verify_mailbox.app", "VerifyMailboxFunction"),
        ("functions.publish_status.app", "PublishStatusFunction"),
    ],
)
def test_event_functions_do_not_import_powertools_parser_models(module: str, logical_id: str) -> None:
    # Powertools' parser models (every event source's pydantic models) are built when imported; the batch
    # utility imports them when pydantic was imported before it. Our own models validate these events.
    watched = ("aws_lambda_powertools.utilities.parser.models", "aws_lambda_powertools.utilities.batch")
    imported = _imported(module, logical_id, watched)
    assert imported["aws_lambda_powertools.utilities.parser.models"] is False
    # (and the watch is real: the invite sender does use the batch utility)
    assert imported["aws_lambda_powertools.utilities.batch"] is (logical_id == "SendInviteFunction")


CHECK_CODE = ("requests", "spnego", "msal", "onboarding.exchange.check", "onboarding.m365.oauth")


def test_the_checker_loads_the_exchange_and_microsoft_code_at_its_first_check_not_at_init() -> None:
    at_init = _imported("functions.check_mailbox.app", "CheckMailboxFunction", CHECK_CODE)
    # (the watch is real: the first checks import them)
    at_checks = _imported(
        "functions.check_mailbox.app, onboarding.exchange.check, onboarding.exchange.ntlm, onboarding.m365.oauth",
        "CheckMailboxFunction",
        CHECK_CODE,
    )
    assert at_init == dict.fromkeys(CHECK_CODE, False)
    assert at_checks == dict.fromkeys(CHECK_CODE, True)


@pytest.mark.parametrize(
    ("module", "logical_id"),
    [
        ("functions.dispatch_checks.app", "DispatchChecksFunction"),
        ("functions.check_mailbox.app", "CheckMailboxFunction"),
        ("functions.publish_status.app", "PublishStatusFunction"),
    ],
)
def test_the_health_and_status_functions_import_no_api_page_or_mail_code(
    module: str, logical_id: str
) -> None:
    watched = (
        "aws_lambda_powertools.event_handler",
        "jinja2",
        "email_validator",
        "onboarding.invites.mailer",
    )
    assert _imported(module, logical_id, watched) == dict.fromkeys(watched, False)
