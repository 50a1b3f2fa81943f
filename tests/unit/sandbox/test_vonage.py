"""The sandbox's Vonage endpoints refuse what Vonage refuses: the application JWT (checked
against the registered key, its algorithm and claims) and the SMS API's parameters."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.sandbox.vonage import VonageApplications, sms, voice

APP = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CALL = {
    "to": [{"type": "phone", "number": "14155550101"}],
    "from": {"type": "phone", "number": "14155550001"},
    "ncco": [{"action": "talk", "text": "db down"}],
}


def apps() -> VonageApplications:
    found = VonageApplications()
    public = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    found.register(APP, public.decode())
    return found


def bearer(key: Any = KEY, algorithm: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {"application_id": APP, "iat": now, "jti": "j1", "exp": now + 900, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return "Bearer " + jwt.encode(payload, key, algorithm=algorithm)


def test_a_good_jwt_places_the_call() -> None:
    status, body, _, fields = voice(apps(), bearer(), CALL)
    assert (status, body["status"], fields["to"]) == (201, "started", "14155550101")


@pytest.mark.parametrize(
    ("authorization", "refused"),
    [
        (None, "no Bearer token"),
        ("Bearer not.a.jwt", "malformed JWT"),
        (bearer(OTHER), "invalid JWT: Signature verification failed"),
        (bearer(application_id="someone-else"), "unknown application_id"),
        (bearer(exp=int(time.time()) - 3600), "invalid JWT: Signature has expired"),
        (bearer(iat=int(time.time()) + 3600), "invalid JWT: The token is not yet valid (iat)"),
        (bearer(exp=None, iat=int(time.time()) - 901), "expired"),
        (bearer(jti=None), 'invalid JWT: Token is missing the "jti" claim'),
        (bearer(b"a-shared-secret-of-32-bytes-long!", "HS256"), "alg must be RS256"),
    ],
    ids=[
        "none",
        "malformed",
        "other-key",
        "unknown-app",
        "expired",
        "future",
        "old-no-exp",
        "no-jti",
        "hs256",
    ],
)
def test_a_bad_jwt_is_refused_with_401(authorization: str | None, refused: str) -> None:
    status, body, headers, fields = voice(apps(), authorization, CALL)
    assert status == 401 and fields["refused"] == refused
    assert json.loads(body)["title"] == "Unauthorized"
    assert headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"to": []}, "to"),
        ({"to": [{"type": "phone", "number": "+14155550101"}]}, "to"),
        ({"from": None}, "from"),
        ({"ncco": [{"action": "talk"}]}, "ncco"),
        ({"ncco": [{"action": "dance"}]}, "ncco"),
        ({"answer_url": ["https://example.com/ncco"]}, "ncco"),  # both ncco and answer_url
    ],
)
def test_a_bad_call_is_refused_with_400(change: dict[str, Any], name: str) -> None:
    status, body, _, _ = voice(apps(), bearer(), {**CALL, **change})
    assert status == 400
    assert json.loads(body)["invalid_parameters"][0]["name"] == name


FORM = "api_key=k&api_secret=s&from=14155550001&to=14155550101&text=hi"


@pytest.mark.parametrize(
    ("form", "status"),
    [
        (FORM, "0"),
        (FORM.replace("api_secret=s", "api_secret=x"), "4"),
        (FORM.replace("&text=hi", ""), "2"),
        (FORM.replace("to=14155550101", "to=%2B14155550101"), "3"),
        (FORM.replace("from=14155550001", "from=TooLongSenderName"), "15"),
        (FORM + "&type=binaryish", "3"),
    ],
)
def test_the_sms_api_answers_200_with_a_status(form: str, status: str) -> None:
    code, body, _, _ = sms("k", "s", {}, form.encode(), "application/x-www-form-urlencoded")
    assert code == 200
    assert body["messages"][0]["status"] == status
    assert ("error-text" in body["messages"][0]) is (status != "0")


def test_a_long_sms_is_split_into_parts_each_with_an_id() -> None:
    form = FORM.replace("text=hi", "text=" + "x" * 400)
    _, body, _, fields = sms("k", "s", {}, form.encode(), "application/x-www-form-urlencoded")
    assert body["message-count"] == "3" and fields["parts"] == 3
    assert len({m["message-id"] for m in body["messages"]}) == 3
