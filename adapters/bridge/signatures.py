"""Checks that an inbound request really comes from the provider (or notifier) that signed it.

Pure functions: the caller passes the secrets, the headers, the raw body and the clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.webhook import sign

DEFAULT_PORTS = {"http": 80, "https": 443}
# the order of the P-256 group: a private value must lie in [1, P256_ORDER)
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class SignatureError(Exception):
    """A request whose signature, timestamp or token does not check out."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _same(expected: str, given: str) -> bool:
    # bytes, because compare_digest refuses non-ASCII str and a header may carry anything
    return hmac.compare_digest(expected.encode(), given.encode())


def _fresh(timestamp: str, now: float, max_age_s: float) -> None:
    # isdigit rather than int(): int() also takes "1_700_000_000", " 17 " and "+17"
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise SignatureError("timestamp is not a whole number of seconds")
    if abs(now - int(timestamp)) > max_age_s:
        raise SignatureError("stale request: timestamp outside the allowed window")


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by sorted key+value pairs."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(
        hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    ).decode()


def _port_variants(url: str) -> list[str]:
    # Twilio signs sometimes with the default port written out and sometimes without
    parts = urlsplit(url)
    default = DEFAULT_PORTS.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return [url]
    if default is None:
        return [url]
    if port is None:
        return [url, urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}"))]
    if port == default:
        return [url, urlunsplit(parts._replace(netloc=parts.netloc.rpartition(":")[0]))]
    return [url]


def verify_twilio(
    auth_tokens: Sequence[str], url: str, params: Mapping[str, str], signature: str | None
) -> None:
    """Accept a Twilio webhook signed with any of `auth_tokens` (current and previous)."""
    tokens = [t for t in auth_tokens if t]
    if not tokens:
        raise SignatureError("twilio auth token not configured")
    if not signature:
        raise SignatureError("missing X-Twilio-Signature", 401)
    urls = _port_variants(url)
    if not any(
        _same(twilio_signature(token, u, params), signature) for token in tokens for u in urls
    ):
        raise SignatureError("bad twilio signature")


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """X-Slack-Signature: "v0=" + hex HMAC-SHA256 of "v0:<timestamp>:" + body."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def verify_slack(
    signing_secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    now: float,
    max_age_s: float,
) -> None:
    """Accept a Slack request signed with `signing_secret` no more than `max_age_s` ago."""
    if not signing_secret:
        raise SignatureError("slack signing secret not configured")
    if not timestamp or not signature:
        raise SignatureError("missing X-Slack-Request-Timestamp or X-Slack-Signature", 401)
    _fresh(timestamp, now, max_age_s)
    if not _same(slack_signature(signing_secret, timestamp, body), signature):
        raise SignatureError("bad slack signature")


@lru_cache(maxsize=8)
def _sendgrid_public_key(text: str) -> ec.EllipticCurvePublicKey:
    # SendGrid's settings page shows bare base64 DER; people also paste it wrapped as PEM
    try:
        if "-----BEGIN" in text:
            key = serialization.load_pem_public_key(text.strip().encode())
        else:
            der = base64.b64decode("".join(text.split()), validate=True)
            key = serialization.load_der_public_key(der)
    except (ValueError, binascii.Error) as exc:
        raise SignatureError(f"sendgrid public key unreadable: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError("sendgrid public key is not a P-256 key")
    return key


def verify_sendgrid(
    public_key: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    now: float,
    max_age_s: float,
) -> None:
    """Accept a SendGrid signed event webhook: ECDSA P-256/SHA-256 over timestamp + body."""
    if not public_key.strip():
        raise SignatureError("sendgrid webhook public key not configured")
    key = _sendgrid_public_key(public_key)
    if not timestamp or not signature:
        raise SignatureError(
            "missing X-Twilio-Email-Event-Webhook-Signature or -Timestamp header", 401
        )
    _fresh(timestamp, now, max_age_s)
    try:
        der = base64.b64decode(signature, validate=True)
        key.verify(der, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise SignatureError("bad sendgrid signature") from None


def sendgrid_keypair_from_seed(seed: bytes) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key derived from `seed`, and its public key as SendGrid shows it (base64 DER)."""
    # derived, not stored, so that no private key literal has to live in the repository
    value = int.from_bytes(hashlib.sha256(seed).digest(), "big") % P256_ORDER or 1
    private = ec.derive_private_key(value, ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def sendgrid_sign(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """X-Twilio-Email-Event-Webhook-Signature: base64 DER ECDSA signature of timestamp + body."""
    der = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode()


def verify_notifier(
    secret: str, header: str | None, body: bytes, now: float, max_age_s: float
) -> None:
    """Accept a request signed by adapters.webhook.sign: "t=<seconds>,v1=<hex HMAC-SHA256>"."""
    if not secret:
        raise SignatureError("notifier signing secret not configured")
    if not header:
        raise SignatureError("missing X-Notifier-Signature", 401)
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(name, value)
    timestamp, given = fields.get("t"), fields.get("v1")
    if not timestamp or not given:
        raise SignatureError("malformed X-Notifier-Signature")
    _fresh(timestamp, now, max_age_s)
    expected = sign(secret, int(timestamp), body).rpartition(",v1=")[2]
    if not _same(expected, given):
        raise SignatureError("bad notifier signature")
