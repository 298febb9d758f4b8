"""An attempt whose starter died: the connect page writes `connecting`, seals the secret, then starts the
attempt's workflow. When Lambda kills the function in between (its time limit, out of memory), no
`except` or `finally` runs: without this the agent would stay `connecting` for ever with its secret
stored (the owner sees "not now", a resend gets 409).

So the `connecting` write records, with the attempt (which names the execution, `onboarding.core.executions`),
a start deadline: the latest moment the starting function can still be alive (its remaining time) plus a
margin for a start request still in flight. Once the workflow is started, the starter removes it.
Whoever next reads an agent still `connecting` past its deadline (the connect page, the dashboard API's
read and resend) settles it: it asks Step Functions for that attempt's execution and

- when it does not exist (nothing runs, and nothing ever will: its starter is dead), deletes the
  agent's secrets and moves the agent to `failed` with `internal_error`, conditioned on the version it
  read (so on the same attempt). The invite is not touched: the owner retries with the same link, no
  try spent on our failure;
- when it exists, removes the deadline (the workflow runs and records its own verdict).

Reads before the deadline, and of agents with no deadline, cost nothing extra.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from onboarding.agents import dead_workflows
from onboarding.agents.models import Agent, AgentRecord, AgentStatus, Attr
from onboarding.agents.store import AgentRepository
from onboarding.core.credentials import CredentialStore
from onboarding.core.errors import ConcurrentModificationError, error_code
from onboarding.core.executions import execution_arn
from onboarding.core.observability import logger, metrics

# A StartExecution request sent just before the kill may still be taken by Step Functions after it.
START_MARGIN = timedelta(seconds=60)
# Lambda's longest time limit: the budget of a starter that does not know its own.
MAX_FUNCTION_SECONDS = 900.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def start_deadline(now: datetime, remaining_seconds: float) -> str:
    """The deadline to record with `connecting`: the starter's remaining time plus the margin (ISO UTC)."""
    deadline = now + timedelta(seconds=max(0.0, remaining_seconds)) + START_MARGIN
    return deadline.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class StartWatch:
    repo: AgentRepository
    credentials: CredentialStore
    sfn: Any  # the Step Functions client
    state_machine_arn: str
    clock: Callable[[], datetime] = field(default=_utcnow)

    def check(self, tenant_id: str, agent_id: str) -> AgentRecord | None:
        """The agent as it stands once settled (None when there is none)."""
        record = self.repo.get_record(tenant_id, agent_id)
        return self.settle(record) if record is not None else None

    def settle_listed(self, agent: Agent) -> Agent | None:
        """`agent` from a listing (its public fields only), settled when its start may have died: only
        an agent `connecting` since before the shortest possible deadline is read whole (one read; the
        Step Functions question only past its own deadline). None when it was removed meanwhile."""
        if agent.status is not AgentStatus.CONNECTING:
            return agent
        if self.clock() <= _parse(agent.updated_at) + START_MARGIN:
            return agent  # no deadline can have passed yet
        record = self.check(agent.tenant_id, agent.agent_id)
        return record.agent if record is not None else None

    def settle(self, record: AgentRecord) -> AgentRecord:
        """`record`, or what it became when its attempt's start was found dead (see the module)."""
        deadline = record.connection.start_deadline
        if record.agent.status is not AgentStatus.CONNECTING or not deadline:
            return record
        if self.clock() <= _parse(deadline):
            return record  # its starter may still be at work
        agent, attempt = record.agent, record.connection.connect_attempt
        try:
            self.sfn.describe_execution(
                executionArn=execution_arn(self.state_machine_arn, agent.agent_id, attempt)
            )
        except ClientError as error:
            if error_code(error) != "ExecutionDoesNotExist":
                return self._unknown(record, error_code(error))
            self._end_failed(record)
        except Exception as error:  # a read stays a read: the next one asks again
            return self._unknown(record, type(error).__name__)
        else:  # the starter died after starting it: the workflow records its own verdict
            self.started(agent.tenant_id, agent.agent_id, attempt)
        return self.repo.get_record(agent.tenant_id, agent.agent_id) or record

    def _end_failed(self, record: AgentRecord) -> None:
        # Nothing can use the secrets any more: no workflow runs for this attempt and none will start.
        if not dead_workflows.end_failed(self.repo, self.credentials, record):
            return  # another reader settled it, or the agent was removed meanwhile
        logger.warning(
            "A connection attempt whose start died was ended",
            extra={"agent_id": record.agent.agent_id, "attempt": record.connection.connect_attempt},
        )
        metrics.add_metric(name="DeadStartEnded", unit="Count", value=1)

    def started(self, tenant_id: str, agent_id: str, attempt: int) -> None:
        """The attempt's workflow runs: its start needs no watching any more. Conditioned on the attempt;
        a no-op once the agent moved on (the workflow's own transitions leave the deadline, never read
        outside `connecting`, and the next attempt writes its own)."""
        with contextlib.suppress(ConcurrentModificationError):
            self.repo.update_attributes(
                tenant_id,
                agent_id,
                {},
                expected_status=AgentStatus.CONNECTING,
                remove_attributes=(Attr.START_DEADLINE,),
                expected={Attr.ATTEMPT: attempt},
            )

    def _unknown(self, record: AgentRecord, error: str) -> AgentRecord:
        logger.warning(
            "Could not tell whether the workflow started",
            extra={"agent_id": record.agent.agent_id, "error": error},
        )
        return record
