"""The sandbox's Google token endpoint refuses what Google refuses, and its tokens expire."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from adapters.sandbox.google_oauth import AUDIENCE, FCM_SCOPE, JWT_BEARER, TokenIssuer

EMAIL = "notifier@sandbox-project.iam.gserviceaccount.com"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def grant(key: rsa.RSAPrivateKey = KEY, **claims: Any) -> bytes:
    now = int(time.time())
    payload = {"iss": EMAIL, "aud": AUDIENCE, "scope": FCM_SCOPE, "iat": now, "exp": now + 3600}
    signer = crypt.RSASigner.from_string(pem(key))  # type: ignore[no-untyped-call]
    assertion = jwt.encode(signer, {**payload, **claims})  # type: ignore[no-untyped-call]
    return urlencode({"grant_type": JWT_BEARER, "assertion": assertion.decode()}).encode()


def issuer(lifetime_s: int = 3600) -> TokenIssuer:
    public = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    found = TokenIssuer()
    found.register(EMAIL, public.decode(), lifetime_s)
    return found


def test_a_signed_assertion_gets_a_token_fcm_accepts() -> None:
    status, body, _, _ = issuer().token(grant())
    assert status == 200 and body["expires_in"] == 3600 and body["token_type"] == "Bearer"
    assert issuer().valid(body["access_token"]) is False  # minted by another issuer
    minting = issuer()
    token = minting.token(grant())[1]["access_token"]
    assert minting.valid(token) and minting.minted == 1


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (grant(OTHER), 401, "invalid_client"),
        (grant(iss="someone@else.iam.gserviceaccount.com"), 401, "invalid_client"),
        (grant(aud="https://example.com/token"), 400, "invalid_grant"),
        (grant(exp=int(time.time()) - 10), 400, "invalid_grant"),
        (grant(scope="https://www.googleapis.com/auth/cloud-platform"), 400, "invalid_scope"),
        (urlencode({"grant_type": "password"}).encode(), 400, "unsupported_grant_type"),
        (urlencode({"grant_type": JWT_BEARER, "assertion": "x.y"}).encode(), 400, "invalid_grant"),
    ],
    ids=["other key", "unknown account", "audience", "expired", "scope", "grant", "malformed"],
)
def test_what_google_refuses_is_refused(body: bytes, status: int, error: str) -> None:
    refused = issuer().token(body)
    assert (refused[0], refused[1]["error"]) == (status, error)


def test_an_expired_token_is_no_longer_accepted() -> None:
    expiring = issuer(lifetime_s=0)
    token = expiring.token(grant())[1]["access_token"]
    assert not expiring.valid(token)
