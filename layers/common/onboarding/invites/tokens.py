"""Invite link tokens: 256 random bits, sent once in the email, stored only as their SHA-256.

The token is a bearer secret. Nothing here logs it; callers must not either (log the agent id and the
invite version instead). 32 random bytes leave nothing to brute-force, so an unsalted hash is enough
to find the item while a copy of the table reveals no usable link.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_BYTES = 32
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet.
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """Hex SHA-256 of the token: the only form in which a token is ever stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(value: str) -> bool:
    """Cheap shape check before any lookup (a malformed value is simply not found)."""
    return bool(_TOKEN_SHAPE.fullmatch(value))


def invite_link(public_base_url: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}/connect/{token}"
