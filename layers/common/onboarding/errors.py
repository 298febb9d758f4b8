"""Typed domain errors. Handlers map these to responses by type, never by message text."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the service raises on purpose. `code` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str, *, details: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class AgentNotFoundError(DomainError):
    code = "agent_not_found"


class DuplicateAgentError(DomainError):
    code = "duplicate_agent"


class IllegalTransitionError(DomainError):
    code = "illegal_transition"


class ConcurrentModificationError(DomainError):
    """The agent changed between read and write (optimistic locking by `version`)."""

    code = "concurrent_modification"


class InvalidPageTokenError(DomainError):
    code = "invalid_next_token"


class MissingTenantError(DomainError):
    """The verified token carries no usable tenant claim."""

    code = "missing_tenant"
