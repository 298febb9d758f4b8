"""Naming of the verification workflow's executions: one per connection attempt."""

from __future__ import annotations

import json


def execution_name(agent_id: str, attempt: int) -> str:
    """One execution per connection attempt, named so that a retried start cannot run it twice."""
    return f"{agent_id}-{attempt}"


def execution_arn(state_machine_arn: str, agent_id: str, attempt: int) -> str:
    """Executions are named `<agentId>-<attempt>`, so their ARN is known without storing it."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{execution_name(agent_id, attempt)}"


def workflow_input(
    tenant_id: str, agent_id: str, attempt: int, *, settings_timeout_seconds: int, method: str
) -> str:
    """What an attempt's execution starts with: references only (the secret stays in the credential store)."""
    return json.dumps(
        {
            "tenantId": tenant_id,
            "agentId": agent_id,
            "attempt": attempt,
            "settingsTimeoutSeconds": settings_timeout_seconds,
            "method": method,
        }
    )
