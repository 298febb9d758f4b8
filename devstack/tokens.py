"""The local stand-in for the identity provider: it mints tokens, and the gateway accepts only those.

Tokens are HS256 JWTs signed with a random per-checkout secret kept in `.devstack/jwt-secret`
(git-ignored), so `python -m devstack token` and a running gateway agree without any setup.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import jwt

from devstack.template import ROOT

ISSUER = "http://127.0.0.1/local-issuer"
AUDIENCE = "mailbox-onboarding-local"
STATE_DIR = Path(os.environ.get("DEVSTACK_STATE_DIR", ROOT / ".devstack"))


class InvalidTokenError(Exception):
    pass


def _secret() -> bytes:
    path = STATE_DIR / "jwt-secret"
    if not path.exists():
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as stream:
            stream.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def mint(
    tenant_id: str,
    *,
    subject: str = "local-admin",
    ttl_seconds: int = 12 * 3600,
    tenant_claim: str = "custom:tenant_id",
) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + ttl_seconds,
        tenant_claim: tenant_id,
    }
    return jwt.encode(claims, _secret(), algorithm="HS256")


def verify(authorization: str | None) -> dict[str, Any]:
    """Claims of a `Bearer <jwt>` header minted here, or InvalidTokenError (-> 401)."""
    if not authorization:
        raise InvalidTokenError("missing Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise InvalidTokenError("expected 'Bearer <token>'")
    try:
        claims: dict[str, Any] = jwt.decode(
            token.strip(), _secret(), algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER
        )
    except jwt.PyJWTError as error:
        raise InvalidTokenError(str(error)) from error
    return claims
