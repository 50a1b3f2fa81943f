"""Error classification: one table decides whether a failed send is worth retrying.

TRANSIENT may succeed later (timeouts, 429, 5xx); PERMANENT will not (bad recipient,
rejected payload); CONFIGURATION needs an operator (credentials, missing contact).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from notifier.contracts.records import FailureCategory

T, P, C = FailureCategory.TRANSIENT, FailureCategory.PERMANENT, FailureCategory.CONFIGURATION


class FailureKind(Enum):
    """How a send failed, before classification."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP = "http"
    SMTP = "smtp"
    PROVIDER = "provider"  # a provider error code in a 2xx/4xx body (Slack ok=false, Vonage)
    MISSING_SETTING = "missing_setting"
    CIRCUIT_OPEN = "circuit_open"


@dataclass(frozen=True)
class Failure:
    """What went wrong with one send, as observed."""

    kind: FailureKind
    status: int | None = None
    code: str | None = None  # provider error code: Slack error, Twilio code, FCM errorCode


# Provider codes whose meaning beats the HTTP status they come with.
CODE_RULES: dict[str, FailureCategory] = {
    # Slack chat.postMessage errors
    "invalid_auth": C,
    "not_authed": C,
    "account_inactive": C,
    "token_revoked": C,
    "missing_scope": C,
    "not_allowed_token_type": C,
    "ratelimited": T,
    "internal_error": T,
    "fatal_error": T,
    "service_unavailable": T,
    "request_timeout": T,
    "channel_not_found": P,
    "user_not_found": P,
    "is_archived": P,
    "msg_too_long": P,
    "invalid_blocks": P,
    "no_text": P,
    # Twilio REST error codes
    "20003": C,
    "20404": P,
    "21211": P,
    "21212": C,
    "21606": C,
    "21608": C,
    "21610": P,
    "21614": P,
    "20429": T,
    # Vonage SMS API message status (HTTP 200, "status" of each message part), prefixed
    # "vonage:" as bare numbers would read as some other provider's codes. An account or
    # sender problem is CONFIGURATION: another provider can still send the message.
    "vonage:1": T,  # Throttled: faster than the account's rate
    "vonage:2": P,  # Missing Parameters
    "vonage:3": P,  # Invalid Parameters (e.g. the to number)
    "vonage:4": C,  # Invalid Credentials
    "vonage:5": T,  # Internal Error
    "vonage:6": P,  # Invalid Message: unroutable
    "vonage:7": P,  # Number Barred
    "vonage:8": C,  # Partner Account Barred
    "vonage:9": C,  # Partner Quota Violation: not enough credit
    "vonage:10": T,  # Too Many Existing Binds
    "vonage:11": C,  # Account Not Enabled For HTTP
    "vonage:12": P,  # Message Too Long
    "vonage:14": C,  # Invalid Signature
    "vonage:15": C,  # Invalid Sender Address (our from)
    "vonage:22": P,  # Invalid Network Code
    "vonage:23": C,  # Invalid Callback Url
    "vonage:29": C,  # Non-Whitelisted Destination (a trial account)
    "vonage:32": C,  # Signature And API Secret Disallowed
    "vonage:33": P,  # Number De-activated
    # FCM v1 errorCode
    "UNREGISTERED": P,
    "INVALID_ARGUMENT": P,
    "SENDER_ID_MISMATCH": C,
    "THIRD_PARTY_AUTH_ERROR": C,
    "QUOTA_EXCEEDED": T,
    "UNAVAILABLE": T,
    "INTERNAL": T,
}


def classify(failure: Failure) -> FailureCategory:
    """The category of a failed send."""
    if failure.kind in (FailureKind.TIMEOUT, FailureKind.CONNECTION, FailureKind.CIRCUIT_OPEN):
        return T
    if failure.kind is FailureKind.MISSING_SETTING:
        return C
    if failure.code is not None and failure.code in CODE_RULES:
        return CODE_RULES[failure.code]
    status = failure.status
    if status is None:
        return T
    if failure.kind is FailureKind.SMTP:
        if status in (530, 534, 535, 538):
            return C
        return T if 400 <= status < 500 else P
    if status in (401, 403, 407):
        return C
    if status in (408, 409, 425, 429) or status >= 500:
        return T
    return P
