"""No agent stuck by a dead workflow: Step Functions reports an execution that ended FAILED, TIMED_OUT or
ABORTED with its own event ("Step Functions Execution Status Change", on EventBridge), and the rule in
template.yaml hands exactly those to `functions/workflow_events`.

A workflow records its own verdict (Record Verified, Record Failure). One that dies before it could (Record
Failure kept failing: "Failure Not Recorded"; a state machine bug; an execution stopped by hand) would leave
its agent `connecting` or `needs_settings` for ever. The event settles it: when the agent is still on the
attempt that execution ran (its input names tenant, agent and attempt) and still waiting for that workflow,
its secrets are deleted and it moves to `failed` with `internal_error`, conditioned on the version read. An
agent that moved on (a newer attempt runs, a verdict was recorded, the agent was removed) is left alone;
a removed agent's secrets are deleted again (idempotent: nothing may use them any more).

The start watch (`onboarding.agents.start_watch`) ends attempts whose workflow never started in the same way.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, Json

from onboarding.agents.models import INTERNAL_ERROR, AgentRecord, AgentStatus, Attr
from onboarding.agents.store import AgentRepository
from onboarding.core.credentials import CredentialStore
from onboarding.core.errors import ConcurrentModificationError, IllegalTransitionError
from onboarding.core.observability import logger, metrics

DEAD = ("FAILED", "TIMED_OUT", "ABORTED")
# Waiting for the workflow: what only the workflow (or this) moves on from.
_WAITING = frozenset({AgentStatus.CONNECTING, AgentStatus.NEEDS_SETTINGS})


class WorkflowInput(BaseModel):
    """The references an execution starts with (`onboarding.core.executions.workflow_input`). Other fields
    (settingsTimeoutSeconds, method, and whatever a later version adds) steer the workflow, not this:
    ignored, so an execution started by any version of the code can be settled."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    tenant_id: str = Field(alias="tenantId", min_length=1)
    agent_id: str = Field(alias="agentId", min_length=1)
    attempt: int = Field(ge=1)


class ExecutionDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    status: Literal["FAILED", "TIMED_OUT", "ABORTED"]
    # A JSON string in the event (null only above 256 KB; ours is a few references).
    input: Json[WorkflowInput]
    error: str | None = None  # never the cause: it may hold a stack or a task's output


class ExecutionStatusChange(BaseModel):
    """The EventBridge event, as the rule in template.yaml filters it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    source: Literal["aws.states"]
    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    detail: ExecutionDetail


def end_failed(repo: AgentRepository, credentials: CredentialStore, record: AgentRecord) -> bool:
    """The attempt `record` is on is over without a verdict: delete its secrets, then move the agent to
    `failed` (`internal_error`) if it is still at the version read. Secrets first, so that a failure here
    leaves the agent waiting for the next try. False when another writer got there first."""
    agent = record.agent
    credentials.delete(agent.tenant_id, agent.agent_id)
    try:
        repo.transition(
            agent.tenant_id,
            agent.agent_id,
            AgentStatus.FAILED,
            reason=INTERNAL_ERROR,
            expected_version=agent.version,
            remove_attributes=(Attr.START_DEADLINE, Attr.TASK_TOKEN),
        )
    except (ConcurrentModificationError, IllegalTransitionError):
        return False  # settled by someone else, or removed meanwhile
    return True


def settle(repo: AgentRepository, credentials: CredentialStore, change: ExecutionStatusChange) -> bool:
    """Settle the agent of a dead execution (see the module); True when it was moved to `failed`."""
    run = change.detail.input
    record = repo.get_record(run.tenant_id, run.agent_id)
    log = {"agent_id": run.agent_id, "attempt": run.attempt, "execution_status": change.detail.status}
    if record is None:
        credentials.delete(run.tenant_id, run.agent_id)
        logger.info("Dead workflow of a removed agent: secrets deleted", extra=log)
        return False
    if record.connection.connect_attempt != run.attempt or record.agent.status not in _WAITING:
        logger.info("Dead workflow of an agent that moved on", extra=log)
        return False
    if not end_failed(repo, credentials, record):
        return False
    logger.warning("A connection attempt whose workflow died was ended", extra=log)
    metrics.add_metric(name="DeadWorkflowEnded", unit="Count", value=1)
    return True
