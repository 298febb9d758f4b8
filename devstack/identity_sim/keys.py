"""The token signing key (RS256, published as JWKS) and the tokens signed with it."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """A fresh RSA-2048 key per simulator start, published as Microsoft does: a JWK with the key's
    self-signed certificate in ``x5c``, named by ``kid`` = ``x5t`` = the certificate's SHA-1 thumbprint."""

    def __init__(self) -> None:
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public = self._private.public_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.windows.net")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .sign(self._private, hashes.SHA256())
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        self.x5c = base64.b64encode(der).decode()
        self.kid = _b64url(hashlib.sha1(der, usedforsecurity=False).digest())

    def jwk(self, issuer: str) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.public))
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": jwk["n"],
            "e": jwk["e"],
            "x5c": [self.x5c],
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
