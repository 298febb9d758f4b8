"""Reason codes and plain-words messages of the Microsoft 365 path (no network, no msal)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from onboarding.m365.outcomes import (
    OUTCOMES,
    M365Reason,
    aadsts_codes,
    message_for,
    reason_for_identity_error,
)


@pytest.mark.parametrize(
    ("error", "codes", "description", "expected"),
    [
        ("access_denied", [65004], "AADSTS65004: User declined to consent", M365Reason.CONSENT_DECLINED),
        ("access_denied", [90094], "", M365Reason.ADMIN_CONSENT_REQUIRED),
        ("invalid_grant", [65001], "", M365Reason.ADMIN_CONSENT_REQUIRED),
        ("access_denied", [53003], "", M365Reason.CONDITIONAL_ACCESS),
        ("access_denied", [50057], "", M365Reason.ACCOUNT_DISABLED),
        ("invalid_tenant", [90002], "", M365Reason.TENANT_DISABLED),
        ("invalid_grant", [54005], "", M365Reason.SIGN_IN_EXPIRED),
        # The authorize redirect carries no error_codes: the number is read from the description's prefix.
        (
            "access_denied",
            None,
            "AADSTS53003: Access has been blocked by Conditional Access policies.",
            M365Reason.CONDITIONAL_ACCESS,
        ),
        ("access_denied", None, "AADSTS50057: The user account is disabled.", M365Reason.ACCOUNT_DISABLED),
        ("access_denied", None, "AADSTS999999: something new", M365Reason.SIGN_IN_FAILED),
        ("consent_required", None, "", M365Reason.ADMIN_CONSENT_REQUIRED),
    ],
)
def test_microsoft_errors_map_to_stable_reasons_by_number_not_text(
    error: str, codes: list[int] | None, description: str, expected: M365Reason
) -> None:
    # Given an OAuth error as Microsoft sends it / When classified / Then the reason is the documented one
    assert reason_for_identity_error(error, codes, description) is expected


def test_only_the_leading_aadsts_number_counts() -> None:
    assert aadsts_codes(None, "AADSTS50057: blah, see also AADSTS53003") == [50057]
    assert aadsts_codes(["53003"], "AADSTS50057") == [53003]


def test_every_reason_has_a_page_and_a_way_forward() -> None:
    assert set(OUTCOMES) == set(M365Reason)
    for reason, outcome in OUTCOMES.items():
        assert all((outcome.title, outcome.message, outcome.next_step)), reason
        assert reason.value.startswith("m365_")


def test_the_wrong_account_message_names_both_accounts() -> None:
    text = message_for(M365Reason.WRONG_ACCOUNT, signed_in="olga@other.test", invited="mia@m365.test")
    assert text is not None
    assert "You signed in as olga@other.test; this invite is for mia@m365.test." in text


def test_admin_consent_outcome_forwards_a_link_to_it() -> None:
    outcome = OUTCOMES[M365Reason.ADMIN_CONSENT_REQUIRED]
    assert outcome.admin_consent_link
    assert outcome.for_it


def test_the_functions_load_neither_msal_nor_requests_at_cold_start() -> None:
    # msal and requests load only on the routes and the step that sign in or call Graph.
    code = (
        "import sys, functions.auth_callback.app, functions.verify_mailbox.app; "
        "print('msal' in sys.modules, 'requests' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "False"]
