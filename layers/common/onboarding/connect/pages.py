"""HTML for the hosted connect page: Jinja2 with autoescape, strict security headers, CSRF nonces.

Pages carry no external assets: one stylesheet and one small script served by us, so the CSP can be
`default-src 'none'` with styles and scripts from 'self' only. Everything works without JavaScript
(the status page refreshes itself); with it, the status page polls the JSON variant instead.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from onboarding.core.errors import CsrfError

if TYPE_CHECKING:
    from jinja2 import Environment

HERE = Path(__file__).parents[1]  # onboarding/: the templates and static files
STATIC_FILES = {"connect.css": "text/css; charset=utf-8", "connect.js": "text/javascript; charset=utf-8"}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@functools.cache
def environment() -> Environment:
    # Imported here: static files, JSON status and redirects render nothing.
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def static_file(name: str) -> tuple[bytes, str] | None:
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        return None
    return (HERE / "static" / name).read_bytes(), content_type


# -- CSRF ------------------------------------------------------------------------------------


def csrf_nonce(key: bytes, scope: str, *, now: float | None = None) -> str:
    """A fresh nonce for one rendered form, bound to the invite (scope) and signed; stateless, so a GET
    writes nothing."""
    issued = int(now if now is not None else time.time())
    salt = secrets.token_urlsafe(12)
    mac = hmac.new(key, f"{scope}|{issued}|{salt}".encode(), hashlib.sha256).hexdigest()
    return f"{issued}.{salt}.{mac}"


def check_csrf_nonce(key: bytes, scope: str, nonce: str | None, *, max_age: int = 3600) -> None:
    try:
        issued_text, salt, mac = (nonce or "").split(".")
        issued = int(issued_text)
    except ValueError:
        raise CsrfError("missing or malformed form nonce") from None
    expected = hmac.new(key, f"{scope}|{issued}|{salt}".encode(), hashlib.sha256).hexdigest()
    # compare_digest refuses non-ASCII str (TypeError): a pasted or forged nonce is simply wrong.
    if not (mac.isascii() and hmac.compare_digest(mac, expected)):
        raise CsrfError("form nonce does not match")
    if not 0 <= time.time() - issued <= max_age:
        raise CsrfError("form nonce expired")


def check_origin(public_base_url: str, origin: str | None, fetch_site: str | None) -> None:
    """A state-changing POST must come from our own page.

    With `Referrer-Policy: no-referrer` (the token is in the URL) browsers send `Origin: null` on our own
    form posts, so a null Origin is accepted and the signed nonce carries the proof; any real Origin must
    be ours, and the Fetch-Metadata header `Sec-Fetch-Site`, when sent, must say same-origin.
    """
    if origin and origin != "null" and origin != _origin_of(public_base_url):
        raise CsrfError("request from another site")
    if fetch_site and fetch_site not in {"same-origin", "none"}:
        raise CsrfError("request from another site")


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
