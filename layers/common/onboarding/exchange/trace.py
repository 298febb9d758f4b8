"""A trace of discovery and verification for the owner's IT admin (what Microsoft's Remote Connectivity
Analyzer shows): each step with its URL, DNS answer, TCP peer, TLS certificate, HTTP status, offered auth
schemes, autodiscover result or error code, EWS answer and time taken.

No secret ever enters it: URLs lose their query and user info, challenges keep only scheme names (never
tokens), no header or body is recorded, and the password, if a caller hands it over, is masked in every
text. The record is size-bounded (``MAX_STEPS`` steps, ``MAX_TEXT`` characters per field), so it can be
stored with the agent. Pure Python: no exchangelib, no requests.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from .diagnoses import ExchangeFailure, verdict_text

MAX_STEPS = 60
MAX_TEXT = 240

StepKind = Literal[
    "start", "candidate", "dns", "tcp", "tls", "http", "autodiscover", "redirect", "ews", "verdict"
]


def safe_url(url: str) -> str:
    """``scheme://host[:port]/path`` only: no user info, query or fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"[:MAX_TEXT] if parts.scheme else ""


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_TEXT]


class TraceStep(BaseModel):
    """One step: what was asked, of whom, what came back, how long it took."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    at_ms: int = Field(description="milliseconds since the trace started")
    kind: StepKind
    phase: str = Field(default="", description="discover | verify")
    url: str | None = None
    host: str | None = None
    addresses: tuple[str, ...] = ()
    status: int | None = None
    schemes: tuple[str, ...] = ()
    tls_subject: str | None = None
    tls_issuer: str | None = None
    tls_expires: str | None = None
    result: str | None = None
    took_ms: int | None = None


class ExchangeTrace(BaseModel):
    """The stored form: a bounded list of steps plus the verdict."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    started: str
    email_domain: str = ""
    steps: tuple[TraceStep, ...] = ()
    truncated: int = 0  # steps left out past MAX_STEPS
    verdict: str | None = None

    def to_text(self) -> str:
        """A plain-text report an owner can forward to IT."""
        lines = [
            "Mailbox connection report",
            f"Started: {self.started}",
            f"Email domain: {self.email_domain}",
            f"Result: {self.verdict or 'unknown'}",
            "",
        ]
        for step in self.steps:
            parts = [f"+{step.at_ms / 1000:7.3f}s", f"[{step.phase or '-'}]", step.kind]
            if step.url:
                parts.append(step.url)
            elif step.host:
                parts.append(step.host)
            if step.addresses:
                parts.append("-> " + ", ".join(step.addresses))
            if step.status is not None:
                parts.append(f"HTTP {step.status}")
            if step.schemes:
                parts.append("offers " + ", ".join(step.schemes))
            if step.tls_subject:
                parts.append(
                    f"certificate {step.tls_subject} (issuer {step.tls_issuer}, expires {step.tls_expires})"
                )
            if step.result:
                parts.append(f": {step.result}")
            if step.took_ms is not None:
                parts.append(f"({step.took_ms} ms)")
            lines.append(" ".join(parts))
        if self.truncated:
            lines.append(f"... {self.truncated} more steps left out")
        return "\n".join(lines) + "\n"


class TraceRecorder:
    """Collects steps from every thread of one discovery/verification (thread-safe, bounded)."""

    _prior: ExchangeTrace | None = None

    def __init__(self, email_domain: str = "", secrets: tuple[str, ...] = ()) -> None:
        self._t0 = time.monotonic()
        self._started = datetime.now(UTC).isoformat(timespec="seconds")
        self._lock = threading.Lock()
        self._steps: list[TraceStep] = []
        self._truncated = 0
        self._secrets = tuple(s for s in secrets if s)
        self.email_domain = email_domain
        self.phase = ""
        self.verdict: str | None = None

    def mask_also(self, secret: str) -> None:
        """Never let ``secret`` (the password) into any field, whatever a server echoes."""
        if secret:
            self._secrets = (*self._secrets, secret)

    def _mask(self, text: str | None) -> str | None:
        if text is None:
            return None
        for secret in self._secrets:
            # Every occurrence, in any letter case (a server may echo it more than once, e.g. in a RedirectUrl).
            text = re.sub(re.escape(secret), "***", text, flags=re.IGNORECASE)
        return _clip(text)

    def add(
        self,
        kind: StepKind,
        *,
        url: str | None = None,
        host: str | None = None,
        addresses: tuple[str, ...] = (),
        status: int | None = None,
        schemes: tuple[str, ...] = (),
        tls: tuple[str, str, str] | None = None,
        result: str | None = None,
        started: float | None = None,
    ) -> None:
        now = time.monotonic()
        step = TraceStep(
            at_ms=int(((started if started is not None else now) - self._t0) * 1000),
            kind=kind,
            phase=self.phase,
            url=self._mask(safe_url(url)) if url else None,
            host=self._mask(host),
            addresses=tuple(a[:64] for a in addresses[:8]),
            status=status,
            schemes=tuple(s[:32] for s in schemes[:8]),
            tls_subject=self._mask(tls[0]) if tls else None,
            tls_issuer=self._mask(tls[1]) if tls else None,
            tls_expires=_clip(tls[2]) if tls else None,
            result=self._mask(result),
            took_ms=int((now - started) * 1000) if started is not None else None,
        )
        with self._lock:
            if len(self._steps) >= MAX_STEPS:
                self._truncated += 1
            else:
                self._steps.append(step)

    def continuing(self, previous: ExchangeTrace | None) -> None:
        """Start from ``previous`` (discovery's steps, before verification's): its steps come first."""
        if previous is None:
            return
        with self._lock:
            self._prior = previous

    def snapshot(self) -> ExchangeTrace:
        with self._lock:
            prior = self._prior
            own = tuple(sorted(self._steps, key=lambda s: s.at_ms))
            steps = (*prior.steps, *own) if prior else own
            truncated = self._truncated + (prior.truncated if prior else 0) + max(0, len(steps) - MAX_STEPS)
            return ExchangeTrace(
                started=prior.started if prior else self._started,
                truncated=truncated,
                steps=steps[:MAX_STEPS],
                email_domain=self.email_domain,
                verdict=self.verdict,
            )


@contextmanager
def traced(
    trace: TraceRecorder | None, phase: str, password: str, *, host_on_failure: bool = False
) -> Iterator[None]:
    """One phase (discovery or verification) of the IT admin's trace: the password masked from every
    field, the phase named on its steps, and a failure's verdict recorded before it goes on."""
    if trace is None:
        yield
        return
    trace.mask_also(password)
    trace.phase = phase
    try:
        yield
    except ExchangeFailure as failure:
        trace.add("verdict", host=failure.host if host_on_failure else None, result=verdict_text(failure))
        trace.verdict = failure.code.value
        raise
