"""The DynamoDB agent repository, against moto with the table from template.yaml."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from onboarding.agents.models import AGENT_FIELDS, HEALTH_FIELDS, TRANSITIONS, Agent, AgentStatus, Attr
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core.errors import (
    AgentNotFoundError,
    ConcurrentModificationError,
    DuplicateAgentError,
    IllegalTransitionError,
    InvalidPageTokenError,
)
from tests import lifecycle
from tests.conftest import TABLE_NAME

S = AgentStatus


def _add(repo: DynamoAgentRepository, email: str = "ann@contoso.com", tenant: str = "demo") -> Agent:
    return lifecycle.add(repo, email=email, tenant=tenant)


def _walk(repo: DynamoAgentRepository, agent: Agent, status: AgentStatus) -> Agent:
    return lifecycle.walk(repo, agent, status)


def test_a_new_agent_is_stored_invite_pending_and_read_back(repo: DynamoAgentRepository) -> None:
    created = _add(repo)
    assert created.status is S.INVITE_PENDING
    assert created.version == 1
    assert repo.get("demo", created.agent_id) == created


@pytest.mark.parametrize(
    ("start", "target"),
    [(a, b) for a in lifecycle.PATH_TO for b in S if b is not S.REMOVED and b in TRANSITIONS[a]],
)
def test_each_legal_transition_is_written_with_a_new_version(
    repo: DynamoAgentRepository, start: AgentStatus, target: AgentStatus
) -> None:
    agent = _walk(repo, _add(repo), start)
    moved = repo.transition("demo", agent.agent_id, target, reason="because")
    assert (moved.status, moved.version, moved.status_reason) == (target, agent.version + 1, "because")
    assert repo.get("demo", agent.agent_id) == moved
    # verifiedAt is written when the agent is verified and kept afterwards (a reconnect keeps its history)
    assert (moved.verified_at is not None) is (target is S.VERIFIED or agent.verified_at is not None)


@pytest.mark.parametrize(
    ("start", "target"),
    [(a, b) for a in lifecycle.PATH_TO for b in S if b is not S.REMOVED and b not in TRANSITIONS[a]],
)
def test_each_illegal_transition_is_refused_and_changes_nothing(
    repo: DynamoAgentRepository, start: AgentStatus, target: AgentStatus
) -> None:
    agent = _walk(repo, _add(repo), start)
    with pytest.raises(IllegalTransitionError):
        repo.transition("demo", agent.agent_id, target)
    assert repo.get("demo", agent.agent_id) == agent


@pytest.mark.parametrize("start", list(lifecycle.PATH_TO))
def test_any_status_can_be_removed(repo: DynamoAgentRepository, start: AgentStatus) -> None:
    agent = _walk(repo, _add(repo), start)
    assert repo.delete("demo", agent.agent_id) == agent
    with pytest.raises(AgentNotFoundError):
        repo.get("demo", agent.agent_id)


def test_removed_is_not_reachable_through_transition(repo: DynamoAgentRepository) -> None:
    agent = _add(repo)
    with pytest.raises(IllegalTransitionError):
        repo.transition("demo", agent.agent_id, S.REMOVED)


def test_a_stale_version_is_a_concurrent_modification(repo: DynamoAgentRepository) -> None:
    agent = _add(repo)
    repo.transition("demo", agent.agent_id, S.INVITED, expected_version=1)
    with pytest.raises(ConcurrentModificationError):
        repo.transition("demo", agent.agent_id, S.INVITE_FAILED, expected_version=1)
    assert repo.get("demo", agent.agent_id).status is S.INVITED


def test_a_write_racing_a_change_is_rechecked_not_overwritten(repo: DynamoAgentRepository) -> None:
    """Given a reader that saw invite_pending, when another writer moves the agent first, then the
    conditional write fails and the transition is judged again against the new status."""
    agent = _add(repo)
    real_get = repo.get
    calls = {"n": 0}

    def stale_then_fresh(tenant_id: str, agent_id: str) -> Agent:
        calls["n"] += 1
        if calls["n"] == 1:
            stale = real_get(tenant_id, agent_id)
            repo.transition.__func__(repo, tenant_id, agent_id, S.INVITE_FAILED)  # type: ignore[attr-defined]
            return stale
        return real_get(tenant_id, agent_id)

    repo.get = stale_then_fresh  # type: ignore[method-assign]
    with pytest.raises(IllegalTransitionError):
        repo.transition("demo", agent.agent_id, S.INVITED)
    repo.get = real_get  # type: ignore[method-assign]
    assert repo.get("demo", agent.agent_id).status is S.INVITE_FAILED


def test_the_same_mailbox_twice_in_one_tenant_is_a_duplicate_whatever_the_case(
    repo: DynamoAgentRepository,
) -> None:
    first = _add(repo, "ann@contoso.com")
    with pytest.raises(DuplicateAgentError) as raised:
        _add(repo, "ANN@Contoso.COM")
    assert len(repo.list("demo", status=None, limit=100, next_token=None).items) == 1
    # and the error names the agent that has the address, so a caller can go on with it
    assert raised.value.details == [
        {"field": "email", "message": "already used by another agent", "agentId": first.agent_id}
    ]


def test_the_same_mailbox_in_two_tenants_is_two_agents(repo: DynamoAgentRepository) -> None:
    a = _add(repo, tenant="acme")
    b = _add(repo, tenant="demo")
    assert a.agent_id != b.agent_id


def test_a_removed_mailbox_can_be_added_again(repo: DynamoAgentRepository) -> None:
    agent = _add(repo)
    assert repo.delete("demo", agent.agent_id) is not None
    assert repo.delete("demo", agent.agent_id) is None
    assert _add(repo).agent_id != agent.agent_id


def test_removing_leaves_nothing_of_the_agent_in_the_table(repo: DynamoAgentRepository) -> None:
    agent = _add(repo, "gone@contoso.com")
    repo.delete("demo", agent.agent_id)
    items = boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
    assert "gone@contoso.com" not in str(items).lower()
    assert agent.agent_id not in str(items)


def test_tenants_never_see_each_others_agents(repo: DynamoAgentRepository) -> None:
    theirs = _add(repo, "bob@fabrikam.com", tenant="acme")
    with pytest.raises(AgentNotFoundError):
        repo.get("demo", theirs.agent_id)
    with pytest.raises(AgentNotFoundError):
        repo.transition("demo", theirs.agent_id, S.INVITED)
    assert repo.delete("demo", theirs.agent_id) is None
    assert repo.list("demo", status=None, limit=100, next_token=None).items == []
    assert repo.get("acme", theirs.agent_id) == theirs


def test_pages_cover_every_agent_once_in_creation_order(repo: DynamoAgentRepository) -> None:
    created = [_add(repo, f"user{i}@contoso.com").agent_id for i in range(7)]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = repo.list("demo", status=None, limit=3, next_token=token)
        seen += [a.agent_id for a in page.items]
        pages += 1
        token = page.next_token
        if token is None:
            break
    assert seen == created
    assert pages >= 3


def test_listing_by_status_uses_the_index_and_pages(repo: DynamoAgentRepository) -> None:
    ids = [_add(repo, f"user{i}@contoso.com").agent_id for i in range(5)]
    for agent_id in ids[:3]:
        repo.transition("demo", agent_id, S.INVITED)
    first = repo.list("demo", status=S.INVITED, limit=2, next_token=None)
    assert first.next_token is not None
    second = repo.list("demo", status=S.INVITED, limit=2, next_token=first.next_token)
    assert [a.agent_id for a in first.items + second.items] == ids[:3]
    assert {
        a.agent_id for a in repo.list("demo", status=S.INVITE_PENDING, limit=10, next_token=None).items
    } == set(ids[3:])


@pytest.mark.parametrize("token", ["garbage", "eyJrIjoiRU1BSUwjeEB5LmNvbSJ9", "eyJrIjoxfQ", ""])
def test_a_forged_page_token_is_refused(repo: DynamoAgentRepository, token: str) -> None:
    with pytest.raises(InvalidPageTokenError):
        repo.list("demo", status=None, limit=10, next_token=token or "=")


def test_reads_of_the_public_agent_transfer_none_of_its_private_state(repo: DynamoAgentRepository) -> None:
    # Given: an agent whose item carries private state (invite, an Exchange trace)
    agent = _add(repo)
    repo.update_attributes(
        "demo", agent.agent_id, {Attr.EXCHANGE_TRACE: "x" * 5000}, expected_status=S.INVITE_PENDING
    )
    responses: list[dict[str, Any]] = []
    repo.ddb.meta.events.register("after-call.dynamodb", lambda parsed, **_: responses.append(parsed))
    # When
    got = repo.get("demo", agent.agent_id)
    page = repo.list("demo", status=None, limit=10, next_token=None)
    by_status = repo.list("demo", status=S.INVITE_PENDING, limit=10, next_token=None)
    # Then: the same agent, and DynamoDB sent back the agent's fields (and its health's) only
    assert got == page.items[0] == by_status.items[0] == agent
    items = [responses[0]["Item"], *responses[1]["Items"], *responses[2]["Items"]]
    assert {name for item in items for name in item} <= AGENT_FIELDS | HEALTH_FIELDS
    assert repo.get_record("demo", agent.agent_id).connection.exchange_trace == "x" * 5000  # type: ignore[union-attr]
