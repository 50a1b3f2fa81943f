"""Error classification table."""

from __future__ import annotations

import pytest

from notifier.contracts.records import FailureCategory
from notifier.domain.failures import Failure, FailureKind, classify

T, P, C = FailureCategory.TRANSIENT, FailureCategory.PERMANENT, FailureCategory.CONFIGURATION
K = FailureKind


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (Failure(K.TIMEOUT), T),
        (Failure(K.CONNECTION), T),
        (Failure(K.CIRCUIT_OPEN), T),
        (Failure(K.MISSING_SETTING), C),
        (Failure(K.HTTP, 429), T),
        (Failure(K.HTTP, 500), T),
        (Failure(K.HTTP, 503), T),
        (Failure(K.HTTP, 408), T),
        (Failure(K.HTTP, 400), P),
        (Failure(K.HTTP, 404), P),
        (Failure(K.HTTP, 413), P),
        (Failure(K.HTTP, 401), C),
        (Failure(K.HTTP, 403), C),
        (Failure(K.HTTP, 400, "21211"), P),  # Twilio: invalid To
        (Failure(K.HTTP, 401, "20003"), C),  # Twilio: authentication
        (Failure(K.HTTP, 429, "20429"), T),
        (Failure(K.PROVIDER, 200, "channel_not_found"), P),  # Slack
        (Failure(K.PROVIDER, 200, "invalid_auth"), C),
        (Failure(K.PROVIDER, 200, "ratelimited"), T),
        (Failure(K.HTTP, 404, "UNREGISTERED"), P),  # FCM: stale token
        (Failure(K.HTTP, 429, "QUOTA_EXCEEDED"), T),
        (Failure(K.HTTP, 400, "unknown-code"), P),
        (Failure(K.SMTP, 421), T),
        (Failure(K.SMTP, 450), T),
        (Failure(K.SMTP, 535), C),
        (Failure(K.SMTP, 550), P),
        (Failure(K.HTTP), T),
    ],
)
def test_classify(failure: Failure, expected: FailureCategory) -> None:
    assert classify(failure) is expected


# Every status the Vonage SMS API documents, as it comes: a 200 naming the status.
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("1", T),  # Throttled
        ("2", P),  # Missing Parameters
        ("3", P),  # Invalid Parameters
        ("4", C),  # Invalid Credentials
        ("5", T),  # Internal Error
        ("6", P),  # Invalid Message (unroutable)
        ("7", P),  # Number Barred
        ("8", C),  # Partner Account Barred
        ("9", C),  # Partner Quota Violation (credit)
        ("10", T),  # Too Many Existing Binds
        ("11", C),  # Account Not Enabled For HTTP
        ("12", P),  # Message Too Long
        ("14", C),  # Invalid Signature
        ("15", C),  # Invalid Sender Address
        ("22", P),  # Invalid Network Code
        ("23", C),  # Invalid Callback Url
        ("29", C),  # Non-Whitelisted Destination
        ("32", C),  # Signature And API Secret Disallowed
        ("33", P),  # Number De-activated
        ("99", P),  # not documented: as any unknown code
    ],
)
def test_classify_vonage_sms_status(status: str, expected: FailureCategory) -> None:
    assert classify(Failure(K.PROVIDER, 200, f"vonage:{status}")) is expected


def test_vonage_statuses_do_not_shadow_other_providers_codes() -> None:
    # a bare "1" or "4" means nothing: the HTTP status decides
    assert classify(Failure(K.HTTP, 400, "4")) is P
    assert classify(Failure(K.HTTP, 503, "4")) is T
