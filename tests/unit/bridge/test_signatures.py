"""The bridge's signature checks agree with the providers' own libraries: the same requests
are accepted and the same tampered ones refused."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import (  # type: ignore[import-untyped]
    EventWebhook,
    EventWebhookHeader,
)
from slack_sdk.signature import Clock, SignatureVerifier
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from adapters.bridge.signatures import (
    SignatureError,
    sendgrid_keypair_from_seed,
    sendgrid_sign,
    slack_signature,
    twilio_signature,
    verify_notifier,
    verify_sendgrid,
    verify_slack,
    verify_twilio,
)
from adapters.webhook import sign

NOW = 1_700_000_000
MAX_AGE = 300.0


def accepted(check: Callable[[], None]) -> bool:
    """True when our verifier lets the request through, False when it raises SignatureError."""
    try:
        check()
    except SignatureError:
        return False
    return True


def theirs_accepts(check: Callable[[], Any]) -> bool:
    """The reference's verdict; a reference that raises on malformed input refuses it."""
    try:
        return bool(check())
    except (ValueError, TypeError):
        return False


# --- Twilio ----------------------------------------------------------------------------------

OLD, NEW = "twilio-token-old", "twilio-token-new"
GATHER = "https://bridge.example.com/twilio/gather?n=N-1&i=I-1"
GATHER_443 = "https://bridge.example.com:443/twilio/gather?n=N-1&i=I-1"
PARAMS = {
    "AccountSid": "ACsandbox00000000000000000000000000",
    "CallSid": "CA0123456789abcdef0123456789abcdef",
    "Digits": "1",
    "From": "+14155550000",
    "To": "+14155550101",
    "CallStatus": "in-progress",
}


@dataclasses.dataclass(frozen=True)
class TwilioCase:
    configured: tuple[str, ...] = (NEW,)
    signed_with: str = NEW
    signed_url: str = GATHER
    url: str = GATHER
    sent: dict[str, str] = dataclasses.field(default_factory=lambda: dict(PARAMS))
    received: Callable[[dict[str, str]], dict[str, str]] = lambda p: p
    signature: Callable[[str], str] = lambda s: s
    ok: bool = True


TWILIO_CASES = {
    "valid": TwilioCase(),
    "signed-with-default-port": TwilioCase(signed_url=GATHER_443),
    "requested-with-default-port": TwilioCase(url=GATHER_443),
    "http-default-port": TwilioCase(
        signed_url="http://bridge.example.com:80/t?x=1", url="http://bridge.example.com/t?x=1"
    ),
    "no-params": TwilioCase(sent={}),
    "unicode-param": TwilioCase(sent={**PARAMS, "SpeechResult": "acknowledgé ✓"}),
    "changed-param": TwilioCase(received=lambda p: {**p, "Digits": "2"}, ok=False),
    "added-param": TwilioCase(received=lambda p: {**p, "Extra": "x"}, ok=False),
    "removed-param": TwilioCase(
        received=lambda p: {k: v for k, v in p.items() if k != "To"}, ok=False
    ),
    "changed-url-query": TwilioCase(url=GATHER.replace("N-1", "N-2"), ok=False),
    "changed-url-host": TwilioCase(url=GATHER.replace("bridge.", "evil."), ok=False),
    "changed-url-scheme": TwilioCase(url=GATHER.replace("https:", "http:"), ok=False),
    "wrong-token": TwilioCase(signed_with="not-the-token", ok=False),
    "truncated-signature": TwilioCase(signature=lambda s: s[:-4], ok=False),
    "garbage-signature": TwilioCase(signature=lambda s: "garbage!!", ok=False),
    "non-ascii-signature": TwilioCase(signature=lambda s: s[:-1] + "é", ok=False),
    "signature-of-empty-form": TwilioCase(
        signature=lambda s: twilio_signature(NEW, GATHER, {}), ok=False
    ),
    "rotation-old-token-while-both-configured": TwilioCase(configured=(NEW, OLD), signed_with=OLD),
    "rotation-new-token-while-both-configured": TwilioCase(configured=(NEW, OLD)),
    "rotation-old-token-after-rotation": TwilioCase(configured=(NEW,), signed_with=OLD, ok=False),
}


@pytest.mark.parametrize("case", TWILIO_CASES.values(), ids=TWILIO_CASES.keys())
def test_twilio_ours_and_theirs_agree(case: TwilioCase) -> None:
    signature = case.signature(twilio_signature(case.signed_with, case.signed_url, case.sent))
    params = case.received(dict(case.sent))
    ours = accepted(lambda: verify_twilio(case.configured, case.url, params, signature))
    theirs = any(
        theirs_accepts(partial(RequestValidator(token).validate, case.url, params, signature))
        for token in case.configured
    )
    assert (ours, theirs) == (case.ok, case.ok)


@pytest.mark.parametrize(
    "params",
    [
        PARAMS,
        {},
        {"Body": "héllo & <b>", "b": "2", "a": "1", "A": "0"},
        # an SMS to our number, as the incoming-message webhook gets it: "+" and spaces
        {
            "MessageSid": "SM0123456789abcdef0123456789abcdef",
            "AccountSid": "ACsandbox00000000000000000000000000",
            "From": "+14155550177",
            "To": "+14155550000",
            "Body": "ACK 4821 ",
            "NumMedia": "0",
            "SmsStatus": "received",
        },
    ],
    ids=["call", "empty", "unicode-and-ordering", "inbound-sms"],
)
def test_twilio_signature_is_the_one_twilio_computes(params: dict[str, str]) -> None:
    assert twilio_signature(NEW, GATHER, params) == RequestValidator(NEW).compute_signature(
        GATHER, params
    )


def test_twilio_strips_only_the_default_port() -> None:
    """Twilio's validator also drops a non-default port; ours keeps it part of what is signed."""
    url = "http://127.0.0.1:8090/twilio/gather"
    signature = twilio_signature(NEW, "http://127.0.0.1/twilio/gather", PARAMS)
    assert RequestValidator(NEW).validate(url, PARAMS, signature)
    assert not accepted(lambda: verify_twilio([NEW], url, PARAMS, signature))
    verify_twilio([NEW], url, PARAMS, twilio_signature(NEW, url, PARAMS))


@pytest.mark.parametrize(
    ("tokens", "signature", "status"),
    [([NEW], None, 401), ([NEW], "", 401), ([], "sig", 403), (["", ""], "sig", 403)],
    ids=["missing-header", "empty-header", "no-token", "empty-tokens"],
)
def test_twilio_missing_signature_or_token(
    tokens: list[str], signature: str | None, status: int
) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_twilio(tokens, GATHER, PARAMS, signature)
    assert caught.value.status == status
    assert caught.value.reason


# --- Slack -----------------------------------------------------------------------------------

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_BODY = (
    b"payload=%7B%22type%22%3A%22block_actions%22%2C%22actions%22%3A%5B%7B%22action_id"
    b"%22%3A%22acknowledge%22%2C%22value%22%3A%22I-1%7CN-1%22%7D%5D%7D"
)


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at


@dataclasses.dataclass(frozen=True)
class SlackCase:
    signed_with: str = SECRET
    signed_ts: str = str(NOW)
    ts: str | None = str(NOW)
    sent: bytes = SLACK_BODY
    received: Callable[[bytes], bytes] = lambda b: b
    signature: Callable[[str], str | None] = lambda s: s
    ok: bool = True


SLACK_CASES = {
    "valid": SlackCase(),
    "empty-body": SlackCase(sent=b""),
    "just-under-five-minutes-old": SlackCase(signed_ts=str(NOW - 299), ts=str(NOW - 299)),
    "exactly-five-minutes-old": SlackCase(signed_ts=str(NOW - 300), ts=str(NOW - 300)),
    "stale": SlackCase(signed_ts=str(NOW - 301), ts=str(NOW - 301), ok=False),
    "an-hour-old": SlackCase(signed_ts=str(NOW - 3600), ts=str(NOW - 3600), ok=False),
    "from-the-future": SlackCase(signed_ts=str(NOW + 301), ts=str(NOW + 301), ok=False),
    "changed-body": SlackCase(received=lambda b: b.replace(b"acknowledge", b"resolve"), ok=False),
    "appended-body": SlackCase(received=lambda b: b + b"&x=1", ok=False),
    "changed-timestamp": SlackCase(ts=str(NOW - 1), ok=False),
    "wrong-secret": SlackCase(signed_with="another-signing-secret", ok=False),
    "truncated-signature": SlackCase(signature=lambda s: s[:-6], ok=False),
    "garbage-signature": SlackCase(signature=lambda s: "v0=garbage", ok=False),
    "no-version-prefix": SlackCase(signature=lambda s: s.removeprefix("v0="), ok=False),
    "upper-case-hex": SlackCase(signature=lambda s: "v0=" + s[3:].upper(), ok=False),
    "non-integer-timestamp": SlackCase(signed_ts="17e8", ts="17e8", ok=False),
    "missing-signature": SlackCase(signature=lambda s: None, ok=False),
    "missing-timestamp": SlackCase(ts=None, ok=False),
}


@pytest.mark.parametrize("case", SLACK_CASES.values(), ids=SLACK_CASES.keys())
def test_slack_ours_and_theirs_agree(case: SlackCase) -> None:
    signature = case.signature(slack_signature(case.signed_with, case.signed_ts, case.sent))
    body = case.received(case.sent)
    ours = accepted(lambda: verify_slack(SECRET, case.ts, body, signature, NOW, MAX_AGE))
    theirs = theirs_accepts(
        lambda: SignatureVerifier(SECRET, clock=FixedClock(NOW)).is_valid(body, case.ts, signature)
    )
    assert (ours, theirs) == (case.ok, case.ok)


def test_slack_signature_is_the_one_slack_computes() -> None:
    ours = slack_signature(SECRET, str(NOW), SLACK_BODY)
    assert ours == SignatureVerifier(SECRET).generate_signature(timestamp=str(NOW), body=SLACK_BODY)
    assert ours.startswith("v0=") and len(ours) == 3 + 64


@pytest.mark.parametrize(
    ("ts", "signature", "status", "reason"),
    [
        (None, "v0=abc", 401, "missing"),
        (str(NOW), None, 401, "missing"),
        (str(NOW - 301), "v0=abc", 403, "stale"),
        ("1_700_000_000", "v0=abc", 403, "whole number"),
        (" 1700000000", "v0=abc", 403, "whole number"),
    ],
    ids=["no-timestamp", "no-signature", "stale", "underscored", "padded"],
)
def test_slack_refusal_statuses(
    ts: str | None, signature: str | None, status: int, reason: str
) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_slack(SECRET, ts, SLACK_BODY, signature, NOW, MAX_AGE)
    assert caught.value.status == status
    assert reason in caught.value.reason


def test_slack_without_a_secret_refuses_everything() -> None:
    signature = slack_signature("", str(NOW), SLACK_BODY)
    with pytest.raises(SignatureError, match="not configured") as caught:
        verify_slack("", str(NOW), SLACK_BODY, signature, NOW, MAX_AGE)
    assert caught.value.status == 403


# --- SendGrid --------------------------------------------------------------------------------

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
SG_BODY = (
    b'[{"email":"alice@example.com","timestamp":1700000000,"event":"delivered",'
    b'"sg_event_id":"ZGVsaXZlcmVk","sg_message_id":"abc.filter0001.1.0",'
    b'"notification_id":"N-1","incident_id":"I-1"}]\r\n'
)


def public_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def ecdsa_sign(key: ec.EllipticCurvePrivateKey, ts: str, body: bytes) -> str:
    return base64.b64encode(key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


@dataclasses.dataclass(frozen=True)
class SendGridCase:
    signed_by: ec.EllipticCurvePrivateKey = KEY
    checked_with: ec.EllipticCurvePrivateKey = KEY
    ts: str = str(NOW)
    body: bytes = SG_BODY
    signature: Callable[[str], str] = lambda s: s
    ok: bool = True


SENDGRID_CASES = {
    "valid": SendGridCase(),
    "changed-body": SendGridCase(body=SG_BODY.replace(b"delivered", b"bounce"), ok=False),
    "trailing-newline-dropped": SendGridCase(body=SG_BODY.rstrip(), ok=False),
    "changed-timestamp": SendGridCase(ts=str(NOW - 1), ok=False),
    "wrong-key": SendGridCase(checked_with=OTHER_KEY, ok=False),
    "signed-by-someone-else": SendGridCase(signed_by=OTHER_KEY, ok=False),
    "truncated-signature": SendGridCase(signature=lambda s: s[:-8], ok=False),
    "garbage-signature": SendGridCase(signature=lambda s: "not base64 at all!", ok=False),
    "empty-der": SendGridCase(signature=lambda s: base64.b64encode(b"0\x00").decode(), ok=False),
    "signature-of-another-message": SendGridCase(
        signature=lambda s: ecdsa_sign(KEY, str(NOW), b"[]"), ok=False
    ),
}


@pytest.mark.parametrize("case", SENDGRID_CASES.values(), ids=SENDGRID_CASES.keys())
def test_sendgrid_ours_and_theirs_agree(case: SendGridCase) -> None:
    signature = case.signature(ecdsa_sign(case.signed_by, str(NOW), SG_BODY))
    public = public_b64(case.checked_with)
    ours = accepted(lambda: verify_sendgrid(public, case.ts, case.body, signature, NOW, MAX_AGE))
    theirs = theirs_accepts(
        lambda: EventWebhook(public).verify_signature(case.body.decode(), signature, case.ts)
    )
    assert (ours, theirs) == (case.ok, case.ok)


def test_sendgrid_accepts_the_key_as_pem_too() -> None:
    pem = (
        KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    signature = ecdsa_sign(KEY, str(NOW), SG_BODY)
    verify_sendgrid(pem, str(NOW), SG_BODY, signature, NOW, MAX_AGE)
    with pytest.raises(SignatureError):
        verify_sendgrid(pem, str(NOW), SG_BODY + b" ", signature, NOW, MAX_AGE)


def test_sendgrid_refuses_stale_events_the_helper_would_take() -> None:
    """SendGrid's helper has no clock; ours refuses a replay of an old signed post."""
    ts = str(NOW - 301)
    signature = ecdsa_sign(KEY, ts, SG_BODY)
    assert EventWebhook(public_b64(KEY)).verify_signature(SG_BODY.decode(), signature, ts)
    with pytest.raises(SignatureError, match="stale") as caught:
        verify_sendgrid(public_b64(KEY), ts, SG_BODY, signature, NOW, MAX_AGE)
    assert caught.value.status == 403
    verify_sendgrid(public_b64(KEY), ts, SG_BODY, signature, NOW - 1, MAX_AGE)


@pytest.mark.parametrize(
    ("public_key", "ts", "signature", "status", "reason"),
    [
        ("", str(NOW), "sig", 403, "not configured"),
        ("bm90IGEga2V5", str(NOW), "sig", 403, "unreadable"),
        ("not base64!", str(NOW), "sig", 403, "unreadable"),
        (None, None, "sig", 401, "missing"),
        (None, str(NOW), None, 401, "missing"),
        (None, "yesterday", "sig", 403, "whole number"),
    ],
    ids=["no-key", "not-a-key", "key-not-base64", "no-timestamp", "no-signature", "bad-ts"],
)
def test_sendgrid_refusal_statuses(
    public_key: str | None, ts: str | None, signature: str | None, status: int, reason: str
) -> None:
    key = public_b64(KEY) if public_key is None else public_key
    with pytest.raises(SignatureError) as caught:
        verify_sendgrid(key, ts, SG_BODY, signature, NOW, MAX_AGE)
    assert caught.value.status == status
    assert reason in caught.value.reason


def test_sendgrid_refuses_a_key_on_another_curve() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    signature = ecdsa_sign(p384, str(NOW), SG_BODY)
    with pytest.raises(SignatureError, match="P-256"):
        verify_sendgrid(public_b64(p384), str(NOW), SG_BODY, signature, NOW, MAX_AGE)


def test_seeded_keypair_is_deterministic_and_signs_as_sendgrid() -> None:
    private, public = sendgrid_keypair_from_seed(b"seed-a")
    again, same = sendgrid_keypair_from_seed(b"seed-a")
    _, other = sendgrid_keypair_from_seed(b"seed-b")
    assert public == same != other
    assert private.private_numbers().private_value == again.private_numbers().private_value
    assert public == public_b64(private)
    signature = sendgrid_sign(private, str(NOW), SG_BODY)
    assert EventWebhook(public).verify_signature(SG_BODY.decode(), signature, str(NOW))
    verify_sendgrid(public, str(NOW), SG_BODY, signature, NOW, MAX_AGE)
    assert not EventWebhook(other).verify_signature(SG_BODY.decode(), signature, str(NOW))
    headers = {EventWebhookHeader.SIGNATURE, EventWebhookHeader.TIMESTAMP}
    assert headers == {
        "X-Twilio-Email-Event-Webhook-Signature",
        "X-Twilio-Email-Event-Webhook-Timestamp",
    }


# --- our own webhooks ------------------------------------------------------------------------

HOOK_SECRET = "sandbox-webhook-secret"
HOOK_BODY = b'{"notification_id":"N-1","incident_id":"I-1","kind":"ALERT"}'


@pytest.mark.parametrize(
    ("header", "body", "now", "ok"),
    [
        (sign(HOOK_SECRET, NOW, HOOK_BODY), HOOK_BODY, NOW, True),
        (sign(HOOK_SECRET, NOW - 300, HOOK_BODY), HOOK_BODY, NOW, True),
        (sign(HOOK_SECRET, NOW, HOOK_BODY), HOOK_BODY + b" ", NOW, False),
        (
            sign(HOOK_SECRET, NOW, HOOK_BODY).replace(f"t={NOW}", f"t={NOW + 1}"),
            HOOK_BODY,
            NOW,
            False,
        ),
        (sign("another-secret", NOW, HOOK_BODY), HOOK_BODY, NOW, False),
        (sign(HOOK_SECRET, NOW - 301, HOOK_BODY), HOOK_BODY, NOW, False),
        (sign(HOOK_SECRET, NOW + 301, HOOK_BODY), HOOK_BODY, NOW, False),
        (sign(HOOK_SECRET, NOW, HOOK_BODY)[:-2], HOOK_BODY, NOW, False),
        (f"t={NOW}", HOOK_BODY, NOW, False),
        ("v1=" + "0" * 64, HOOK_BODY, NOW, False),
        ("garbage", HOOK_BODY, NOW, False),
    ],
    ids=[
        "valid",
        "five-minutes-old",
        "changed-body",
        "changed-timestamp",
        "wrong-secret",
        "stale",
        "from-the-future",
        "truncated",
        "no-v1",
        "no-t",
        "garbage",
    ],
)
def test_notifier_signature(header: str, body: bytes, now: float, ok: bool) -> None:
    assert accepted(lambda: verify_notifier(HOOK_SECRET, header, body, now, MAX_AGE)) is ok


@pytest.mark.parametrize(("header", "status"), [(None, 401), ("", 401), ("t=1,v1=00", 403)])
def test_notifier_refusal_statuses(header: str | None, status: int) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_notifier(HOOK_SECRET, header, HOOK_BODY, NOW, MAX_AGE)
    assert caught.value.status == status
