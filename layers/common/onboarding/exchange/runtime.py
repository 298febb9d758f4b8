"""Process-wide exchangelib set-up, the time-budget runner and small helpers shared by discovery and verification.

Nothing heavy at import: exchangelib and the HTTP guard are imported inside the functions.
"""

from __future__ import annotations

import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .diagnoses import Diagnosis, ExchangeFailure, without_secret
from .models import ExchangeConfig

if TYPE_CHECKING:
    from .guard import GuardPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

AUTODISCOVER_PATH = "autodiscover/autodiscover.svc"
EWS_PATH = "EWS/Exchange.asmx"
NTLM, BASIC, DIGEST, NOAUTH = "NTLM", "basic", "digest", "no authentication"  # exchangelib's auth type names
_NOISY_LOGGERS = ("exchangelib", "requests_ntlm", "spnego", "urllib3")

_CONFIGURE_LOCK = threading.Lock()
_configured = False


def _quiet_loggers() -> None:
    # exchangelib logs request headers (Basic credentials included) at DEBUG; spnego/requests_ntlm log tokens.
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_exchangelib() -> None:
    """Import exchangelib safely and set its process-wide knobs once. Idempotent, thread-safe."""
    global _configured
    if _configured:
        return
    with _CONFIGURE_LOCK:
        if _configured:
            return
        # Python 3.13 on Lambda: getpass.getuser() (cache file name) fails without a passwd entry.
        os.environ.setdefault("USER", "lambda")
        _quiet_loggers()
        import tempfile
        from pathlib import Path

        import exchangelib.autodiscover.cache as ad_cache

        # Keep exchangelib's persistent autodiscover cache in the writable temp dir (/tmp on Lambda).
        ad_cache.AUTODISCOVER_PERSISTENT_STORAGE = Path(tempfile.gettempdir(), ad_cache.shelve_filename())
        _configured = True


def clear_exchangelib_caches() -> None:
    """Forget autodiscover results and cached protocols (they hold credentials); close their connections."""
    from exchangelib.autodiscover import autodiscover_cache
    from exchangelib.protocol import CachingProtocol

    with autodiscover_cache:
        autodiscover_cache.close()
        try:
            autodiscover_cache.clear()
        except OSError:
            log.warning("could not clear exchangelib's autodiscover cache file")
    CachingProtocol.clear_cache()


def domain_of(email: str) -> str:
    local, sep, domain = email.strip().rpartition("@")
    if not sep or not local or not domain or "/" in domain or ":" in domain:
        raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, "not an email address")
    return domain.lower().rstrip(".")


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def in_domain(host: str, domain: str) -> bool:
    """``host`` is ``domain`` or a name under it."""
    host, domain = host.lower().rstrip("."), domain.lower().rstrip(".")
    return host == domain or host.endswith("." + domain)


def policy_for(config: ExchangeConfig) -> GuardPolicy:
    from .guard import GuardPolicy

    return GuardPolicy.build(config.allow_networks, config.ca_bundle)


def run_with_deadline(fn: Callable[[], T], deadline: float, what: str, secret: str) -> T:
    """Run ``fn`` in a daemon thread (carrying our context); TIMEOUT if it is not done by ``deadline``."""
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    ctx = contextvars.copy_context()

    def run() -> None:
        try:
            box.put((True, ctx.run(fn)))
        except BaseException as e:
            box.put((False, e))

    threading.Thread(target=run, name=f"exchange-{what}", daemon=True).start()
    try:
        ok, value = box.get(timeout=max(0.0, deadline - time.monotonic()) + 0.25)
    except queue.Empty:
        raise ExchangeFailure(Diagnosis.TIMEOUT, f"{what}: no verdict within the time budget") from None
    if ok:
        return value
    if isinstance(value, ExchangeFailure):
        raise without_secret(value, secret) from None
    raise value
