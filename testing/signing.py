"""RS256 signing for the stand-ins that mint real JWTs (Entra, the managed identity endpoint).

One key per `RsaSigner`; its public half is published as a JWK (`kty`, `use`, `kid`, `n`, `e`, the members
Entra's `discovery/v2.0/keys` document carries for each key), so a client can verify the tokens the way it
verifies Entra's: fetch the JWKS, pick the key by the token header's `kid`, check the RS256 signature.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _integer(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, NOT verified: for tests that look at what a stand-in minted."""
    claims = json.loads(b64url_decode(token.split(".")[1]))
    assert isinstance(claims, dict)
    return claims


@dataclass
class RsaSigner:
    """A 2048-bit RSA key with a `kid`; signs claims into an RS256 JWT and verifies its own tokens."""

    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    kid: str = field(default_factory=lambda: secrets.token_hex(8))

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def jwk(self) -> dict[str, str]:
        numbers = self.key.public_key().public_numbers()
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "n": _integer(numbers.n), "e": _integer(numbers.e)}

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims when `token` is an RS256 JWT this key signed (header `kid` included), else None.

        Checks the signature only: validity window, issuer and audience are the caller's decisions."""
        try:
            header_b64, payload_b64, signature_b64 = token.split(".")
            header = json.loads(b64url_decode(header_b64))
            if not isinstance(header, dict) or header.get("alg") != "RS256" or header.get("kid") != self.kid:
                return None
            self.key.public_key().verify(
                b64url_decode(signature_b64),
                f"{header_b64}.{payload_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            claims = json.loads(b64url_decode(payload_b64))
        except (ValueError, InvalidSignature):
            return None
        return claims if isinstance(claims, dict) else None
