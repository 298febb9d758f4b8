"""The agent model and its status lifecycle."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from onboarding.agents.models import TRANSITIONS, AgentStatus, NewAgent, can_transition

S = AgentStatus
LEGAL = {
    (S.INVITE_PENDING, S.INVITED),
    (S.INVITED, S.CONNECTING),
    (S.CONNECTING, S.NEEDS_SETTINGS),
    (S.NEEDS_SETTINGS, S.CONNECTING),
    (S.NEEDS_SETTINGS, S.FAILED),
    (S.CONNECTING, S.VERIFIED),
    (S.CONNECTING, S.FAILED),
    (S.FAILED, S.CONNECTING),
    (S.INVITE_PENDING, S.INVITE_FAILED),
    (S.INVITE_PENDING, S.INVITE_BOUNCED),
    (S.INVITED, S.INVITE_FAILED),
    (S.INVITED, S.INVITE_BOUNCED),
    # resend
    (S.INVITED, S.INVITE_PENDING),
    (S.INVITE_FAILED, S.INVITE_PENDING),
    (S.FAILED, S.INVITE_PENDING),
    # after onboarding: health checks, and the owner reconnecting
    (S.VERIFIED, S.NEEDS_RECONNECT),
    (S.VERIFIED, S.DISCONNECTED),
    (S.VERIFIED, S.CONNECTING),
    (S.NEEDS_RECONNECT, S.CONNECTING),
    (S.DISCONNECTED, S.VERIFIED),
    (S.DISCONNECTED, S.NEEDS_RECONNECT),
    (S.DISCONNECTED, S.CONNECTING),
    *((status, S.REMOVED) for status in S if status is not S.REMOVED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_every_pair_of_statuses_is_legal_exactly_when_the_lifecycle_says_so(
    current: AgentStatus, target: AgentStatus
) -> None:
    assert can_transition(current, target) is ((current, target) in LEGAL)


def test_the_transition_table_names_every_status() -> None:
    assert set(TRANSITIONS) == set(S)


def test_name_is_trimmed_and_email_kept() -> None:
    agent = NewAgent.model_validate({"name": "  Ann Lee ", "email": "Ann@Contoso.com", "type": "ms_exchange"})
    assert agent.name == "Ann Lee"
    assert agent.email.lower() == "ann@contoso.com"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "   ", "email": "a@b.com", "type": "ms_exchange"}, "name"),
        ({"name": "x" * 101, "email": "a@b.com", "type": "ms_exchange"}, "name"),
        ({"name": "a\nb", "email": "a@b.com", "type": "ms_exchange"}, "name"),
        ({"name": "Ann", "email": "not-an-email", "type": "ms_exchange"}, "email"),
        ({"name": "Ann", "email": "a@b.com", "type": "gmail"}, "type"),
        ({"name": "Ann", "email": "a@b.com", "type": "ms_exchange", "tenantId": "other"}, "tenantId"),
    ],
)
def test_bad_input_names_the_field(body: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        NewAgent.model_validate(body)
    assert [e["loc"][0] for e in caught.value.errors()] == [field]
