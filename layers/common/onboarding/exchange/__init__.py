"""Connect a customer's on-premises Exchange mailbox with email + password: discover settings, verify access.

One module per concern:

* ``diagnoses`` -- verdict codes, the owner's messages, ``ExchangeFailure`` (no exchangelib, no requests:
  the connect page imports only this);
* ``models`` -- ``ExchangeConfig``, ``ExchangeContext`` (what ``discover(email, password, context)`` and
  ``verify(email, password, context)`` take), ``ExchangeSettings``, ``VerificationResult``;
* ``auth`` -- the ``WWW-Authenticate`` parser and the scheme we answer with;
* ``probing`` -- one unauthenticated look at an endpoint, and failure classification;
* ``discovery`` -- autodiscover as Microsoft's clients do it (candidates, redirects, password destinations);
* ``verification`` -- opening the mailbox;
* ``runtime`` -- exchangelib's process-wide set-up and the time-budget runner.

Every connection goes through ``onboarding.exchange.guard.GuardedHTTPAdapter`` (SSRF guard, time budget,
observations). The password never appears in an exception, a ``detail`` or a log record.

Every name is imported lazily (PEP 562), so ``import onboarding.exchange`` (or of one of its modules) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .diagnoses import Diagnosis, ExchangeFailure, message_for
    from .discovery import discover
    from .models import ExchangeConfig, ExchangeContext, ExchangeSettings, VerificationResult
    from .runtime import clear_exchangelib_caches, configure_exchangelib
    from .verification import verify

__all__ = [
    "Diagnosis",
    "ExchangeConfig",
    "ExchangeContext",
    "ExchangeFailure",
    "ExchangeSettings",
    "VerificationResult",
    "clear_exchangelib_caches",
    "configure_exchangelib",
    "discover",
    "message_for",
    "verify",
]

# Everything is imported at first use (PEP 562): `onboarding.exchange.trace`, which the dashboard API's
# models import, must not build the Exchange models' schemas (pydantic) for functions that never connect.
_LAZY = {
    "Diagnosis": "diagnoses",
    "ExchangeFailure": "diagnoses",
    "message_for": "diagnoses",
    "ExchangeConfig": "models",
    "ExchangeContext": "models",
    "ExchangeSettings": "models",
    "VerificationResult": "models",
    "discover": "discovery",
    "verify": "verification",
    "clear_exchangelib_caches": "runtime",
    "configure_exchangelib": "runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
