"""Busy servers, waited out within the call's time budget (imports exchangelib: load it lazily).

Two documented ways a server says "not now, come back in a while":

* EWS throttling ("EWS throttling in Exchange", Microsoft Learn, section "Errors generated when throttling
  limits are exceeded", tables 3 and 4): ``ErrorServerBusy`` in a SOAP fault (HTTP 500) whose detail carries
  ``BackOffMilliseconds``, "the amount of time it should wait until it should resubmit the request".
  exchangelib parses it into ``ErrorServerBusy.back_off``.
* HTTP 503 Service Unavailable (RFC 9110 section 15.6.4: HTTP.sys when the application pool cannot take the
  request, a load balancer draining the server), whose ``Retry-After`` (section 10.2.3) is an HTTP-date or a
  number of seconds.

We configure exchangelib's own retry policy rather than loop ourselves: ``BudgetedRetry`` is its
``FaultTolerance`` (back off, then send the request again) with the call's time budget as its patience. A wait
that would leave less than ``RETRY_MARGIN`` of the budget is not waited: ``RateLimitError``, which ``probing``
reads as SERVER_BUSY ("try again in a few minutes"). Only a 503 and EWS's ``ErrorServerBusy`` are retried:
FaultTolerance alone also reads a 401 as throttling, and any other answer with ``Connection: close`` (a 456 for a
locked account included), and would send the password again (an account lockout in the making: here a 401 is
final, the others are what they are). A 403 after signing in means this login may not use EWS for this mailbox
(ACCESS_DENIED), not an "unknown failure".

The waiting goes through ``Patience.sleep`` (``ExchangeContext.sleep``), so tests wait on nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorInternalServerTransientError,
    ErrorServerBusy,
    RateLimitError,
    TransportError,
    UnauthorizedError,
)
from exchangelib.protocol import FaultTolerance

RETRY_MARGIN = 2.0  # seconds of budget a retry needs after its wait (the request itself, and the verdict)
DEFAULT_BACK_OFF = 2.0  # a busy answer that names no wait (exchangelib's RETRY_WAIT for our protocols)
_DELAY_SECONDS = re.compile(r"[0-9]+")  # RFC 9110 section 10.2.3: delay-seconds = 1*DIGIT (ASCII digits)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """The wait a ``Retry-After`` value asks for (RFC 9110 section 10.2.3): delta-seconds, or an HTTP-date
    (any of the three forms of section 5.6.7) less ``now``; a date already past asks for no wait. None when
    absent or not a valid value."""
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP-dates are GMT
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class Patience:
    """How long the call may still wait for a busy server: until ``deadline`` (``clock`` time), less the
    margin a retry needs."""

    deadline: float
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = field(default=time.monotonic)

    def allows(self, seconds: float) -> bool:
        return seconds <= self.deadline - self.clock() - RETRY_MARGIN


class BudgetedRetry(FaultTolerance):
    """exchangelib's ``FaultTolerance`` bounded by our budget (see the module docstring)."""

    def __init__(self, patience: Patience) -> None:
        super().__init__(max_wait=0)  # unused: back_off() asks our patience instead
        self.patience = patience
        self._wait: float | None = None

    @property
    def back_off_until(self) -> None:
        """exchangelib reads this right before sending a request and sleeps until then
        (``util._back_off_if_needed``); the wait happens here instead, on our sleep."""
        wait, self._wait = self._wait, None
        if wait:
            _note(f"busy: waited {wait:g} s as the server asked, then asked again")
            self.patience.sleep(wait)
        return None

    @back_off_until.setter
    def back_off_until(self, value: Any) -> None:
        self._wait = None

    def back_off(self, seconds: float | None) -> None:
        wait = float(seconds) if seconds is not None else DEFAULT_BACK_OFF
        if not self.patience.allows(wait):
            raise RateLimitError("the server asked us to wait longer than the time budget", wait=wait)
        self._wait = wait

    def raise_response_errors(self, response: Any) -> None:
        status = response.status_code
        if status == 401:
            raise UnauthorizedError(f"Invalid credentials for {response.url}")  # final: never sent again
        if status == 403:
            raise ErrorAccessDenied("HTTP 403 after signing in: this login may not use EWS for this mailbox")
        if status == 503:
            raise ErrorServerBusy(
                "HTTP 503", back_off=retry_after_seconds(response.headers.get("Retry-After"))
            )
        try:
            super().raise_response_errors(response)
        except (ErrorServerBusy, ErrorInternalServerTransientError) as e:
            raise TransportError(f"HTTP {status}: {e}") from None  # not a busy answer: never sent again


def _note(result: str) -> None:
    """A line in the IT admin's trace (the wait is part of the story)."""
    from .guard import current

    trace = current().trace
    if trace is not None:
        trace.add("http", result=result)
