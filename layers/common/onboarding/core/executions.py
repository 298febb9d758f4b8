"""Naming of the verification workflow's executions: one per connection attempt."""

from __future__ import annotations

import json


def execution_name(agent_id: str, attempt: int) -> str:
    """One execution per connection attempt, named so that a retried start cannot run it twice."""
    return f"{agent_id}-{attempt}"


def unqualified(state_machine_arn: str) -> str:
    """The state machine's own ARN, without the alias or version an ARN may end with
    (`arn:aws:states:<region>:<account>:stateMachine:<name>[:<alias or version>]`)."""
    return ":".join(state_machine_arn.split(":")[:7])


def execution_arn(state_machine_arn: str, agent_id: str, attempt: int) -> str:
    """Executions are named `<agentId>-<attempt>`, so their ARN is known without storing it. An execution
    started through an alias or version is named under the state machine itself."""
    base = unqualified(state_machine_arn).replace(":stateMachine:", ":execution:")
    return f"{base}:{execution_name(agent_id, attempt)}"


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
