"""The token signing key (RS256, published as JWKS) and the tokens signed with it."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def _x5t(kid: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha1(kid.encode(), usedforsecurity=False).digest())
        .rstrip(b"=")
        .decode()
    )


class SigningKey:
    """A fresh RSA-2048 key per simulator start; ``kid``/``x5t`` name it in the JWT header and the JWKS."""

    def __init__(self) -> None:
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public = self._private.public_key()
        self.kid = _x5t(str(uuid.uuid4()))

    def jwk(self, issuer: str) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.public))
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": jwk["n"],
            "e": jwk["e"],
            "issuer": issuer,
        }

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self._private, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid, "typ": "JWT"}
        )

    def verify(self, token: str, *, audience: str) -> dict[str, Any]:
        """Signature, algorithm and audience (expiry is the caller's, against the simulator's clock)."""
        header = jwt.get_unverified_header(token)
        if header.get("kid") != self.kid:
            raise jwt.InvalidSignatureError("unknown signing key")
        claims: dict[str, Any] = jwt.decode(
            token,
            self.public,
            algorithms=["RS256"],
            audience=audience,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
        return claims
