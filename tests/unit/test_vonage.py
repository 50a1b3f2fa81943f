"""The Vonage adapters' pure parts: the application JWT, numbers as Vonage takes them, the
SMS API's status per part, and masking what goes into error reasons."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.http import HttpClient
from adapters.vonage import JWT_LIFETIME_S, VonageVoice, masked, sms_status, vonage_number
from notifier.settings import Settings


def test_the_application_jwt_carries_vonages_claims(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "private.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    settings = Settings(vonage_application_id="app-1", vonage_private_key_file=path)
    adapter = VonageVoice(HttpClient(1.0, 1), settings)
    first, second = adapter.token(now=1_700_000_000), adapter.token(now=1_700_000_000)
    claims = jwt.decode(
        first, key.public_key(), algorithms=["RS256"], options={"verify_exp": False}
    )
    assert jwt.get_unverified_header(first) == {"alg": "RS256", "typ": "JWT"}
    assert claims["application_id"] == "app-1"
    assert (claims["iat"], claims["exp"]) == (1_700_000_000, 1_700_000_000 + JWT_LIFETIME_S)
    assert jwt.decode(second, options={"verify_signature": False})["jti"] != claims["jti"]


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+14155550101", "14155550101"),
        ("14155550101", "14155550101"),
        (" +447700900000", "447700900000"),
    ],
)
def test_numbers_go_without_the_plus(number: str, expected: str) -> None:
    assert vonage_number(number) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"message-count": "1", "messages": [{"status": "0", "message-id": "A"}]}, ("0", "")),
        (
            {"messages": [{"status": "0"}, {"status": "1", "error-text": "Throttled"}]},
            ("1", "Throttled"),
        ),
        ({"messages": []}, ("5", "no messages in the answer")),
        ([], ("5", "no messages in the answer")),
    ],
)
def test_an_answer_fails_with_its_first_failed_part(
    body: object, expected: tuple[str, str]
) -> None:
    assert sms_status(body) == expected


def test_numbers_in_error_texts_are_masked() -> None:
    assert masked("Invalid destination 14155550101") == "Invalid destination ***01"
    assert masked("Bad number +447700900123 given") == "Bad number ***23 given"
    assert masked("status 15") == "status 15"
