"""The check of one agent and what its verdict changes: the issue's rules, on the real repository (moto)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from onboarding.agents.models import Agent, AgentRecord, AgentStatus, Attr
from onboarding.agents.schedule import iso, scheduled_attributes
from onboarding.agents.store import DynamoAgentRepository
from onboarding.core.errors import CredentialNotFoundError
from onboarding.health.check import HealthChecker, Outcome
from onboarding.health.models import CheckMessage, HealthPolicy, ProbeResult, Verdict
from tests import lifecycle

S = AgentStatus
T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
POLICY = HealthPolicy()


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ScriptedProbe:
    """A mailbox that answers each sign-in with the next verdict (the last one repeats); counts sign-ins."""

    answers: list[ProbeResult]
    signed_in: int = 0
    during: list[object] = field(default_factory=list)  # callables run during the sign-in (races)

    def probe(self, record: AgentRecord) -> ProbeResult:
        self.signed_in += 1
        for action in self.during:
            action()  # type: ignore[operator]
        return self.answers[min(self.signed_in, len(self.answers)) - 1]


HEALTHY = ProbeResult(Verdict.HEALTHY, inbox_item_count=12)
REFUSED = ProbeResult(Verdict.REFUSED, problem="auth_failed")
LOCKED = ProbeResult(Verdict.LOCKED, problem="account_locked")
DOWN = ProbeResult(Verdict.TRANSIENT, problem="unreachable")


def _connected(repo: DynamoAgentRepository) -> Agent:
    agent = lifecycle.add(repo)
    return lifecycle.walk(
        repo, agent, S.VERIFIED, set_attributes={**scheduled_attributes(agent.agent_id, T0), Attr.ATTEMPT: 1}
    )


def _checker(repo: DynamoAgentRepository, probe: ScriptedProbe, clock: Clock) -> HealthChecker:
    return HealthChecker(repo, exchange=lambda: probe, microsoft=None, policy=POLICY, clock=clock)


def _check(checker: HealthChecker, agent: Agent, cause: str = "schedule"):  # type: ignore[no-untyped-def]
    return checker.check(CheckMessage(tenant_id=agent.tenant_id, agent_id=agent.agent_id, cause=cause))  # type: ignore[arg-type]


def _record(repo: DynamoAgentRepository, agent: Agent) -> AgentRecord:
    record = repo.get_record(agent.tenant_id, agent.agent_id)
    assert record is not None
    return record


def test_a_healthy_check_keeps_the_tick_and_schedules_the_next_one_an_interval_on(
    repo: DynamoAgentRepository,
) -> None:
    agent, clock, probe = _connected(repo), Clock(), ScriptedProbe([HEALTHY])
    due = _record(repo, agent).health.check_due_at
    assert due is not None

    clock.now = datetime.fromisoformat(due)
    report = _check(_checker(repo, probe, clock), agent)

    record = _record(repo, agent)
    assert (report.outcome, record.agent.status) == (Outcome.CHECKED, S.VERIFIED)
    assert record.health.check_state == "ok"
    assert record.health.last_success_at == iso(clock.now)
    assert record.health.check_due_at == iso(datetime.fromisoformat(due) + POLICY.interval)
    assert record.connection.inbox_item_count == 12


def test_a_refused_password_is_tried_exactly_once_whatever_comes_after(repo: DynamoAgentRepository) -> None:
    """Given a server that refuses the stored password, when checks keep coming (schedule and dashboard) for
    days, then the password was sent once, the agent needs a reconnect, and reminders are the only thing sent."""
    agent, clock, probe = _connected(repo), Clock(), ScriptedProbe([REFUSED])
    checker = _checker(repo, probe, clock)

    first = _check(checker, agent)
    for hours in range(1, 24 * 10, 6):
        clock.now = T0 + timedelta(hours=hours)
        _check(checker, agent)
        _check(checker, agent, cause="manual")

    record = _record(repo, agent)
    assert probe.signed_in == 1
    assert (first.verdict, record.agent.status, record.agent.status_reason) == (
        Verdict.REFUSED,
        S.NEEDS_RECONNECT,
        "auth_failed",
    )
    assert record.health.reconnect_purpose == "reconnect"
    # The first email and its reminders, at most POLICY.reconnect.max_emails, then out of the schedule.
    assert record.health.reconnect_emails == POLICY.reconnect.max_emails
    assert record.health.check_due_at is None
    assert record.health.check_shard is None


def test_a_locked_account_is_not_tried_inside_the_window_and_once_after_it(
    repo: DynamoAgentRepository,
) -> None:
    agent, clock, probe = _connected(repo), Clock(), ScriptedProbe([LOCKED, HEALTHY])
    checker = _checker(repo, probe, clock)

    _check(checker, agent)
    locked = _record(repo, agent)
    for minutes in (1, 10, 29):
        clock.now = T0 + timedelta(minutes=minutes)
        assert _check(checker, agent, cause="manual").outcome is Outcome.SKIPPED
    tries_inside = probe.signed_in
    clock.now = T0 + POLICY.lockout_window
    _check(checker, agent)

    assert (locked.agent.status, locked.health.check_state) == (S.VERIFIED, "locked")
    assert locked.health.locked_until == locked.health.check_due_at == iso(T0 + POLICY.lockout_window)
    assert tries_inside == 1
    assert probe.signed_in == 2
    assert _record(repo, agent).health.check_state == "ok"


def test_a_server_down_for_ten_minutes_sends_no_email_and_keeps_the_tick(repo: DynamoAgentRepository) -> None:
    agent, clock, probe = _connected(repo), Clock(), ScriptedProbe([DOWN, DOWN, DOWN, HEALTHY])
    checker = _checker(repo, probe, clock)

    for minutes in (0, 5, 10):
        clock.now = T0 + timedelta(minutes=minutes)
        _check(checker, agent)
    retrying = _record(repo, agent)
    clock.now = T0 + timedelta(minutes=15)
    _check(checker, agent)

    assert (retrying.agent.status, retrying.health.check_state) == (S.VERIFIED, "retrying")
    assert retrying.health.check_failures == 3
    assert retrying.health.failing_since == iso(T0)
    assert retrying.health.check_due_at == iso(
        T0 + timedelta(minutes=10) + timedelta(minutes=20)
    )  # 5, 10, 20
    recovered = _record(repo, agent)
    assert recovered.health.check_state == "ok"
    assert recovered.health.failing_since is None
    assert recovered.health.reconnect_version == 0  # no email asked for, ever


def test_a_mailbox_out_of_reach_past_the_threshold_is_disconnected_once_then_recovers(
    repo: DynamoAgentRepository,
) -> None:
    agent, clock, probe = _connected(repo), Clock(), ScriptedProbe([DOWN, DOWN, DOWN, HEALTHY])
    checker = _checker(repo, probe, clock)

    _check(checker, agent)
    clock.now = T0 + timedelta(hours=23, minutes=59)
    _check(checker, agent)
    still = _record(repo, agent).agent.status
    clock.now = T0 + POLICY.disconnect_after
    _check(checker, agent)
    disconnected = _record(repo, agent)
    clock.now = T0 + POLICY.disconnect_after + timedelta(hours=1)
    _check(checker, agent)

    assert still is S.VERIFIED
    assert (disconnected.agent.status, disconnected.agent.status_reason) == (S.DISCONNECTED, "unreachable")
    assert disconnected.health.reconnect_version == 1
    assert disconnected.health.problem_since == iso(T0)
    back = _record(repo, agent)
    assert (back.agent.status, back.health.check_state, back.health.problem_since) == (S.VERIFIED, "ok", None)


def test_a_check_racing_the_owners_reconnect_leaves_the_reconnect(repo: DynamoAgentRepository) -> None:
    """Given a check whose sign-in is refused while the owner reconnects (a new password, attempt 2), when
    the check records its verdict, then the reconnect stands: no needs_reconnect over it."""
    agent, clock = _connected(repo), Clock()

    def owner_reconnects() -> None:
        repo.transition(agent.tenant_id, agent.agent_id, S.CONNECTING, set_attributes={Attr.ATTEMPT: 2})

    probe = ScriptedProbe([REFUSED], during=[owner_reconnects])
    report = _check(_checker(repo, probe, clock), agent)

    record = _record(repo, agent)
    assert report.outcome is Outcome.STALE
    assert (record.agent.status, record.connection.connect_attempt) == (S.CONNECTING, 2)
    assert record.health.reconnect_version == 0


def test_a_check_racing_a_healthy_reconnect_does_not_overwrite_it(repo: DynamoAgentRepository) -> None:
    agent, clock = _connected(repo), Clock()

    def owner_reconnects_and_verifies() -> None:
        repo.transition(agent.tenant_id, agent.agent_id, S.CONNECTING, set_attributes={Attr.ATTEMPT: 2})
        repo.transition(agent.tenant_id, agent.agent_id, S.VERIFIED)

    probe = ScriptedProbe([DOWN], during=[owner_reconnects_and_verifies])
    report = _check(_checker(repo, probe, clock), agent)

    record = _record(repo, agent)
    assert report.outcome is Outcome.STALE
    assert (record.agent.status, record.health.check_failures, record.health.failing_since) == (
        S.VERIFIED,
        0,
        None,
    )


def test_a_check_racing_the_agents_removal_records_nothing(repo: DynamoAgentRepository) -> None:
    agent, clock = _connected(repo), Clock()
    probe = ScriptedProbe([REFUSED], during=[lambda: repo.delete(agent.tenant_id, agent.agent_id)])

    report = _check(_checker(repo, probe, clock), agent)

    assert report.outcome is Outcome.STALE
    assert repo.get_record(agent.tenant_id, agent.agent_id) is None


def test_a_message_whose_lease_was_replaced_checks_nothing(repo: DynamoAgentRepository) -> None:
    agent, clock, probe = _connected(repo), Clock(), ScriptedProbe([HEALTHY])
    repo.update_attributes(
        agent.tenant_id, agent.agent_id, {Attr.CHECK_LEASE: "new"}, expected_status=S.VERIFIED
    )

    old = CheckMessage(tenant_id=agent.tenant_id, agent_id=agent.agent_id, cause="schedule", lease="old")
    report = _checker(repo, probe, clock).check(old)

    assert (report.outcome, probe.signed_in) == (Outcome.SKIPPED, 0)


def test_a_secret_removed_during_the_check_is_not_a_failure(repo: DynamoAgentRepository) -> None:
    agent, clock = _connected(repo), Clock()

    class Gone:
        def probe(self, record: AgentRecord) -> ProbeResult:
            raise CredentialNotFoundError("removed")

    checker = HealthChecker(repo, exchange=lambda: Gone(), microsoft=None, policy=POLICY, clock=clock)
    assert _check(checker, agent).outcome is Outcome.STALE
    assert _record(repo, agent).health.check_failures == 0


@pytest.mark.parametrize("days_left", [8, 6])
def test_the_owner_is_warned_once_before_the_password_expires(
    repo: DynamoAgentRepository, days_left: int
) -> None:
    agent, clock = _connected(repo), Clock()
    expiring = ProbeResult(Verdict.HEALTHY, password_expires_at=T0 + timedelta(days=days_left))
    checker = _checker(repo, ScriptedProbe([expiring]), clock)

    _check(checker, agent)
    clock.now = T0 + timedelta(hours=6)
    _check(checker, agent)

    record = _record(repo, agent)
    assert record.health.password_expires_at == iso(T0 + timedelta(days=days_left))
    if days_left > 7:
        assert (record.health.reconnect_version, record.health.expiry_warned_for) == (0, None)
    else:
        assert record.health.reconnect_version == 1  # once, though checked twice
        assert record.health.reconnect_purpose == "password_expiry"
        assert record.health.expiry_warned_for == iso(T0 + timedelta(days=days_left))
