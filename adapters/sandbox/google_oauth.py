"""Google's OAuth2 token endpoint for service accounts (the JWT-bearer grant), as FCM's
callers meet it: a signed assertion in, a short-lived access token out.

Service accounts are registered through the control API with their public key, so no
key is kept in the repository; the tokens it mints are what the FCM endpoint accepts.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# what Google requires as the assertion's audience, wherever its token endpoint is reached
AUDIENCE = "https://oauth2.googleapis.com/token"
Reply = tuple[int, Any, dict[str, str], dict[str, Any]]


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _error(error: str, description: str) -> Reply:
    # Google answers a refused grant with 400 (or 401 for a bad signature) and this body
    status = 401 if error == "invalid_client" else 400
    return status, {"error": error, "error_description": description}, {}, {}


@dataclass
class TokenIssuer:
    """Registered service accounts and the access tokens minted for them."""

    token_lifetime_s: int = 3600
    _keys: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)
    _tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    minted: int = 0

    def register(self, client_email: str, public_key_pem: str, lifetime_s: int | None) -> None:
        """Accept assertions signed by this account's key; tokens live `lifetime_s`."""
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("a service account key is RSA")
        with self._lock:
            self._keys[client_email] = key
            if lifetime_s is not None:
                self.token_lifetime_s = lifetime_s

    def valid(self, token: str) -> bool:
        """Whether `token` was minted here and has not expired."""
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.time()

    def token(self, body: bytes) -> Reply:
        """POST token: the JWT-bearer grant of a service account."""
        form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        if form.get("grant_type") != JWT_BEARER:
            return _error("unsupported_grant_type", "Invalid grant_type.")
        try:
            header_b64, claims_b64, signature_b64 = form.get("assertion", "").split(".")
            header = json.loads(_b64url(header_b64))
            claims = json.loads(_b64url(claims_b64))
            signature = _b64url(signature_b64)
        except ValueError:
            return _error("invalid_grant", "Invalid JWT: malformed.")
        if header.get("alg") != "RS256":
            return _error("invalid_grant", "Invalid JWT: alg must be RS256.")
        with self._lock:
            key = self._keys.get(str(claims.get("iss")))
        if key is None:
            return _error("invalid_client", "The OAuth client was not found.")
        try:
            key.verify(
                signature,
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return _error("invalid_client", "Invalid JWT Signature.")
        now = time.time()
        if claims.get("aud") != AUDIENCE:
            return _error("invalid_grant", f"Invalid JWT: aud must be {AUDIENCE}.")
        if not (claims.get("iat", now + 1) - 300 <= now < claims.get("exp", 0)):
            return _error("invalid_grant", "Invalid JWT: Token must be a short-lived token.")
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return _error("invalid_scope", f"The scope {FCM_SCOPE} was not asked for.")
        token = f"ya29.sandbox-{secrets.token_urlsafe(24)}"
        with self._lock:
            lifetime = self.token_lifetime_s
            self._tokens[token] = now + lifetime
            self.minted += 1
        body_out = {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}
        return 200, body_out, {}, {"to": str(claims["iss"])}
