"""The process's AWS clients (onboarding.core.aws): one session shared by every client, one client per service,
and clients that only some requests need created at their first use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest

from onboarding.core import aws


@pytest.fixture
def created(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, str]]]:
    """(session id, service) of every client created from now on."""
    calls: list[tuple[int, str]] = []
    original = botocore.session.Session.create_client

    def recording(self: botocore.session.Session, service: str, *args: Any, **kwargs: Any) -> Any:
        calls.append((id(self), service))
        return original(self, service, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", recording)
    aws.reset_clients()
    yield calls
    aws.reset_clients()


def test_clients_of_different_services_share_one_session(created: list[tuple[int, str]]) -> None:
    # When two services' clients are asked for, twice each
    dynamodb, sfn = aws.client("dynamodb"), aws.client("stepfunctions")
    assert aws.client("dynamodb") is dynamodb
    assert aws.client("stepfunctions") is sfn
    # Then each was created once, from the same session
    assert [service for _, service in created] == ["dynamodb", "stepfunctions"]
    assert len({session for session, _ in created}) == 1


def test_a_lazy_client_is_created_at_its_first_call_and_is_the_shared_one(
    created: list[tuple[int, str]],
) -> None:
    # Given a lazy Step Functions client
    sfn = aws.LazyClient("stepfunctions")
    assert created == []
    # When it is first used
    listed = sfn.list_state_machines()
    # Then the one shared client was created and answered (moto), and errors are that client's
    assert listed["stateMachines"] == []
    assert [service for _, service in created] == ["stepfunctions"]
    assert sfn.exceptions is aws.client("stepfunctions").exceptions
    assert len(created) == 1


def test_reset_forgets_the_session_and_its_clients(created: list[tuple[int, str]]) -> None:
    first = aws.client("dynamodb")
    aws.reset_clients()
    assert aws.client("dynamodb") is not first
    assert len({session for session, _ in created}) == 2
