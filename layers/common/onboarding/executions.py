"""Naming of the verification workflow's executions: one per connection attempt."""

from __future__ import annotations


def execution_name(agent_id: str, attempt: int) -> str:
    """One execution per connection attempt, named so that a retried start cannot run it twice."""
    return f"{agent_id}-{attempt}"


def execution_arn(state_machine_arn: str, agent_id: str, attempt: int) -> str:
    """Executions are named `<agentId>-<attempt>`, so their ARN is known without storing it."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{execution_name(agent_id, attempt)}"
