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
