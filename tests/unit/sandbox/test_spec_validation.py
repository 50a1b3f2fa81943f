"""The sandbox's schema checks refuse what the providers' published schemas refuse (the two
defects that reached production among them) and take what our adapters send."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft6Validator

from adapters.sandbox.spec_validation import (
    ADAPTIVE_CARD,
    FCM_DISCOVERY,
    SENDGRID_OPENAPI,
    TWILIO_OPENAPI,
    adaptive_card_violation,
    discovery_schema,
    fcm_violation,
    sendgrid_violation,
    twilio_violation,
)

FCM_OK: dict[str, Any] = {
    "message": {
        "token": "fcm-token-1",
        "notification": {"title": "[CRITICAL] db down", "body": "Primary unreachable."},
        "data": {"incident_id": "i-1", "notification_id": "n-1", "url": ""},
        "android": {"priority": "HIGH"},
        "apns": {"headers": {"apns-priority": "10"}},
    }
}

SENDGRID_OK: dict[str, Any] = {
    "personalizations": [
        {"to": [{"email": "alice@example.com"}], "custom_args": {"notification_id": "n-1"}}
    ],
    "from": {"email": "notifier@example.com"},
    "subject": "[CRITICAL] db down",
    "content": [
        {"type": "text/plain", "value": "Primary unreachable."},
        {"type": "text/html", "value": "<p>Primary unreachable.</p>"},
    ],
}

Edit = Callable[[dict[str, Any]], object]


def edited(base: dict[str, Any], edit: Edit) -> dict[str, Any]:
    body = copy.deepcopy(base)
    edit(body)
    return body


@pytest.mark.parametrize(
    ("edit", "field", "says"),
    [
        # the defect that reached production: the enum is upper case
        (
            lambda b: b["message"]["android"].update(priority="high"),
            "message.android.priority",
            "Invalid value at 'message.android.priority' (TYPE_ENUM), \"high\"",
        ),
        (
            lambda b: b["message"]["data"].update(attempt=2),
            "message.data.attempt",
            "(TYPE_STRING), 2",
        ),
        (
            lambda b: b["message"]["notification"].update(title=["a"]),
            "message.notification.title",
            "(TYPE_STRING)",
        ),
        (
            lambda b: b["message"].update(priority="HIGH"),
            "message",
            "Unknown name \"priority\" at 'message': Cannot find field.",
        ),
        (
            lambda b: b["message"]["android"].update(ttl="60"),
            "message.android.ttl",
            "google.protobuf.Duration",
        ),
        (
            lambda b: b["message"]["apns"]["headers"].update({"apns-priority": 10}),
            "message.apns.headers.apns-priority",
            "(TYPE_STRING), 10",
        ),
        (lambda b: b.pop("message"), "message", "Required field 'message' is missing."),
        (
            lambda b: b.update(validateOnly="yes"),
            "validateOnly",
            "(TYPE_BOOL)",
        ),
    ],
    ids=[
        "lower-case-priority",
        "data-value-not-string",
        "title-not-string",
        "unknown-field",
        "ttl-not-a-duration",
        "apns-header-not-string",
        "no-message",
        "validate-only-not-bool",
    ],
)
def test_fcm_refuses_what_its_schema_refuses(edit: Edit, field: str, says: str) -> None:
    violation = fcm_violation(edited(FCM_OK, edit))
    assert violation is not None
    assert violation.field == field
    assert says in violation.message


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: None,
        lambda b: b["message"]["android"].update(priority="NORMAL"),
        # proto3 JSON: a field by its proto name, a null as the field left out, int32 as text
        lambda b: b["message"]["android"].update(collapse_key="db", ttl="3.5s"),
        lambda b: b["message"].update(webpush=None),
        lambda b: b["message"]["android"].update(notification={"notificationCount": "3"}),
        lambda b: b.update(validate_only=True),
    ],
    ids=["adapter-shape", "normal", "proto-names", "null", "int32-as-text", "validate-only"],
)
def test_fcm_takes_what_its_schema_takes(edit: Edit) -> None:
    assert fcm_violation(edited(FCM_OK, edit)) is None


def test_fcm_a_body_that_is_not_an_object_is_refused() -> None:
    violation = fcm_violation([FCM_OK])
    assert violation is not None
    assert "Root element must be a message" in violation.message


@pytest.mark.parametrize(
    ("edit", "field", "says"),
    [
        # the defect that reached production: top-level custom_args is a string
        (
            lambda b: b.update(custom_args={"notification_id": "n-1"}),
            "custom_args",
            "Invalid type. Expected: string, given: object.",
        ),
        (
            lambda b: b["personalizations"][0].update(custom_args="n-1"),
            "personalizations.0.custom_args",
            "Expected: object, given: string",
        ),
        (lambda b: b.pop("from"), "from", "The from parameter is required."),
        (
            lambda b: b["personalizations"][0].pop("to"),
            "personalizations.0.to",
            "The personalizations.0.to parameter is required.",
        ),
        (
            lambda b: b["personalizations"][0]["to"][0].update(email="alice"),
            "personalizations.0.to.0.email",
            "Does not contain a valid address.",
        ),
        (
            lambda b: b["content"][1].pop("value"),
            "content.1.value",
            "The content.1.value parameter is required.",
        ),
        (lambda b: b["content"][0].update(value=""), "content.0.value", "non-empty"),
        (
            lambda b: b.update(personalizations=[SENDGRID_OK["personalizations"][0]] * 1001),
            "personalizations",
            "too long",
        ),
    ],
    ids=[
        "top-level-custom-args-object",
        "personalization-custom-args-string",
        "no-from",
        "no-to",
        "bad-address",
        "content-without-value",
        "empty-content",
        "too-many-personalizations",
    ],
)
def test_sendgrid_refuses_what_its_schema_refuses(edit: Edit, field: str, says: str) -> None:
    violation = sendgrid_violation(edited(SENDGRID_OK, edit))
    assert violation is not None
    assert violation.field == field
    assert says in violation.message


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: None,
        lambda b: b.update(custom_args="campaign-7"),
        lambda b: b.update(categories=["incident"], headers={"X-Incident": "i-1"}),
    ],
    ids=["adapter-shape", "custom-args-string", "categories-headers"],
)
def test_sendgrid_takes_what_its_schema_takes(edit: Edit) -> None:
    assert sendgrid_violation(edited(SENDGRID_OK, edit)) is None


@pytest.mark.parametrize(
    ("node", "schema"),
    [
        ({"$ref": "Message"}, {"$ref": "#/$defs/Message"}),
        ({"type": "any"}, {}),
        (
            {"type": "integer", "format": "int32"},
            {"type": ["integer", "string"], "format": "int32"},
        ),
        (
            {"type": "string", "enum": ["NORMAL", "HIGH"]},
            {"type": "string", "enum": ["NORMAL", "HIGH"]},
        ),
        (
            {"type": "object", "additionalProperties": {"type": "string"}},
            {"type": "object", "additionalProperties": {"type": "string"}},
        ),
        (
            {
                "type": "object",
                "properties": {
                    "collapseKey": {"type": "string"},
                    "message": {"$ref": "Message", "description": "Required. Message to send."},
                },
            },
            {
                "type": "object",
                "properties": {
                    "collapseKey": {"type": "string"},
                    "collapse_key": {"type": "string"},
                    "message": {"$ref": "#/$defs/Message"},
                },
                "additionalProperties": False,
                "required": ["message"],
            },
        ),
    ],
    ids=["ref", "any", "int32", "enum", "map", "message"],
)
def test_discovery_types_as_json_schema(node: dict[str, Any], schema: dict[str, Any]) -> None:
    converted = discovery_schema({"schemas": {"T": node}}, "T")
    assert converted["$defs"]["T"] == schema


@pytest.mark.parametrize(
    "spec",
    [FCM_DISCOVERY, SENDGRID_OPENAPI, ADAPTIVE_CARD, TWILIO_OPENAPI],
    ids=lambda p: p.parent.name,
)
def test_each_kept_spec_matches_its_recorded_source(spec: Any) -> None:
    """A spec changed by hand, or refreshed without updating SOURCE.md, fails here."""
    source = (spec.parent / "SOURCE.md").read_text()
    recorded = re.search(r"sha256 \| `([0-9a-f]{64})`", source)
    assert recorded is not None
    assert hashlib.sha256(spec.read_bytes()).hexdigest() == recorded.group(1)
    assert json.loads(spec.read_text())


CARD: dict[str, Any] = {
    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
    "type": "AdaptiveCard",
    "version": "1.4",
    "body": [
        {"type": "TextBlock", "text": "[CRITICAL] db down", "weight": "Bolder", "wrap": True},
        {"type": "TextBlock", "text": "Primary unreachable.", "wrap": True},
    ],
    "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://inc.example.com/1"}],
}

CARD_CASES: list[tuple[str, Edit, str | None]] = [
    ("adapter-shape", lambda c: None, None),
    (
        "nested",
        lambda c: c["body"].append(
            {"type": "Container", "items": [{"type": "FactSet", "facts": []}]}
        ),
        None,
    ),
    (
        "inline-string",
        lambda c: c["body"].append({"type": "RichTextBlock", "inlines": ["plain"]}),
        None,
    ),
    ("unknown-element", lambda c: c["body"][0].update(type="TextBlok"), "body.0.type"),
    ("bad-weight", lambda c: c["body"][0].update(weight="Heavy"), "body.0.weight"),
    ("unknown-property", lambda c: c["body"][1].update(colour="red"), "body.1"),
    ("text-missing", lambda c: c["body"][1].pop("text"), "body.1"),
    ("url-missing", lambda c: c["actions"][0].pop("url"), "actions.0"),
    ("element-not-object", lambda c: c["body"].append("text"), "body.2"),
    (
        "nested-image-without-url",
        lambda c: c["body"].append({"type": "Container", "items": [{"type": "Image"}]}),
        "body.2.items.0",
    ),
    ("not-a-card", lambda c: c.update(type="Card"), "type"),
]


@pytest.mark.parametrize(
    ("edit", "field"), [c[1:] for c in CARD_CASES], ids=[c[0] for c in CARD_CASES]
)
def test_adaptive_cards_are_checked_as_the_published_schema_checks_them(
    edit: Edit, field: str | None
) -> None:
    """The sandbox dispatches element unions by `type` for speed: it must agree with the
    schema read plainly, and name the field at fault."""
    card = edited(CARD, edit)
    violation = adaptive_card_violation(card)
    plain = Draft6Validator(json.loads(ADAPTIVE_CARD.read_text()))
    assert plain.is_valid(card) is (violation is None)
    assert (violation.field if violation else None) == field


# what the Twilio adapter posts, as parse_qs reads it (every value of each field)
TWILIO_SMS: dict[str, list[str]] = {
    "To": ["+15551234567"],
    "From": ["+14155550000"],
    "Body": ["[CRITICAL] db down"],
    "StatusCallback": ["http://127.0.0.1:9/bridge/twilio/status?n=n-1&i=i-1&c=sms&u=u-1"],
}
TWILIO_CALL: dict[str, list[str]] = {
    "To": ["+15551234567"],
    "From": ["+14155550000"],
    "Twiml": ["<Response><Say>db down</Say></Response>"],
    "StatusCallback": ["http://127.0.0.1:9/bridge/twilio/status?n=n-1"],
    "StatusCallbackEvent": ["completed"],
}
TWILIO_BODIES = {"Messages": TWILIO_SMS, "Calls": TWILIO_CALL}


@pytest.mark.parametrize(
    ("resource", "change"),
    [
        ("Messages", {}),
        ("Calls", {}),
        # the spec allows unknown fields (no additionalProperties: false)
        ("Messages", {"Tag": ["incident"]}),
        ("Messages", {"ValidityPeriod": ["600"], "SmartEncoded": ["True"]}),
        ("Messages", {"MediaUrl": ["not a url"]}),  # its format is marked ignoreFormat
        ("Messages", {"ContentRetention": ["discard"], "SendAt": ["2026-12-03T14:00:00Z"]}),
        ("Calls", {"Method": ["GET"], "Timeout": ["30"], "Record": ["false"]}),
        ("Calls", {"StatusCallbackEvent": ["initiated", "completed"]}),
        ("Calls", {"Url": ["https://example.com/twiml"], "Twiml": [""]}),
    ],
    ids=[
        "sms-adapter-shape",
        "call-adapter-shape",
        "unknown-field",
        "integer-and-boolean-as-text",
        "media-url-format-ignored",
        "enum-and-date-time",
        "call-method-timeout-record",
        "repeated-field",
        "blank-field-left-out",
    ],
)
def test_twilio_takes_what_its_schema_takes(resource: str, change: dict[str, list[str]]) -> None:
    assert twilio_violation(resource, {**TWILIO_BODIES[resource], **change}) is None


@pytest.mark.parametrize(
    ("resource", "change", "field", "code", "says"),
    [
        ("Messages", {"To": []}, "To", 21604, "A 'To' phone number is required."),
        ("Messages", {"To": [""]}, "To", 21604, "A 'To' phone number is required."),
        ("Calls", {"To": []}, "To", 21201, "No 'To' number specified."),
        ("Calls", {"From": []}, "From", 21213, "A 'From' phone number is required."),
        ("Calls", {"Method": ["PUT"]}, "Method", 20001, '"PUT" is not one of GET, POST'),
        (
            "Messages",
            {"ContentRetention": ["keep"]},
            "ContentRetention",
            20001,
            '"keep" is not one of retain, discard',
        ),
        ("Calls", {"Timeout": ["1m"]}, "Timeout", 20001, "is not a valid integer"),
        ("Calls", {"Record": ["yes"]}, "Record", 20001, "is not a valid boolean"),
        ("Messages", {"StatusCallback": ["/relative"]}, "StatusCallback", 20001, "valid uri"),
        ("Messages", {"SendAt": ["tomorrow"]}, "SendAt", 20001, "valid date-time"),
        ("Messages", {"ApplicationSid": ["AP1"]}, "ApplicationSid", 20001, "too short"),
    ],
    ids=[
        "sms-no-to",
        "sms-blank-to",
        "call-no-to",
        "call-no-from",
        "call-method-not-in-enum",
        "sms-retention-not-in-enum",
        "timeout-not-integer",
        "record-not-boolean",
        "callback-not-absolute",
        "send-at-not-date-time",
        "sid-pattern",
    ],
)
def test_twilio_refuses_what_its_schema_refuses(
    resource: str, change: dict[str, list[str]], field: str, code: int, says: str
) -> None:
    form = {k: v for k, v in {**TWILIO_BODIES[resource], **change}.items() if v}
    violation = twilio_violation(resource, form)
    assert violation is not None
    assert (violation.field, violation.code) == (field, code)
    assert says in violation.message


def test_twilio_kept_spec_is_what_its_extraction_keeps() -> None:
    """The kept file is a fixed point of extract.py: it holds the two operations, their
    enums and nothing else, so SOURCE.md's command reproduces it from the original."""
    script = TWILIO_OPENAPI.parent / "extract.py"
    loaded = importlib.util.spec_from_file_location("twilio_extract", script)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    kept = json.loads(TWILIO_OPENAPI.read_text())
    assert module.extract(kept) == kept
    assert set(kept["paths"]) == set(module.OPERATIONS)
