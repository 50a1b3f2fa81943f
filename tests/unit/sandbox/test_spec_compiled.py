"""The compiled reading of each schema (jsonschema-rs, the sandbox's hot path) says yes and no
exactly where jsonschema does: a body it took that jsonschema refuses would let a defect
through, and a body it refused that jsonschema takes would cost the slow path every time.
Checked on the adapters' bodies with every single change of value, field or element."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.sandbox.spec_validation import (
    _twilio_schema,
    _without_nulls,
    adaptive_card_compiled,
    adaptive_card_validator,
    fcm_compiled,
    fcm_validator,
    sendgrid_compiled,
    sendgrid_validator,
    twilio_compiled,
    twilio_form,
    twilio_validator,
)
from tests.unit.sandbox.test_spec_validation import (
    CARD,
    FCM_OK,
    SENDGRID_OK,
    TWILIO_CALL,
    TWILIO_SMS,
)

# what a value may be changed to: every JSON type, the edges of int32, and strings that pass
# or fail the formats and enums the schemas assert
VALUES: list[Any] = [
    None,
    True,
    0,
    -7,
    2**31 - 1,
    2**31,
    -(2**31) - 1,
    2**40,
    1.5,
    "",
    "x",
    "7",
    "HIGH",
    "high",
    "NORMAL",
    "3.5s",
    "60",
    "2026-12-03T14:00:00Z",
    "2026-12-03",
    "alice",
    "alice@example.com",
    "https://inc.example.com/1",
    "TextBlock",
    "Action.OpenUrl",
    [],
    ["x"],
    [{}],
    {},
    {"k": "v"},
    {"type": "TextBlock", "text": "t"},
]


def one_change(node: Any) -> Iterator[Any]:
    """`node` with one change: itself replaced, a field left out or added, an element
    replaced, left out or repeated, anywhere inside it."""
    yield from (copy.deepcopy(v) for v in VALUES)
    if isinstance(node, dict):
        for key, value in node.items():
            yield {k: v for k, v in node.items() if k != key}
            for changed in one_change(value):
                yield {**node, key: changed}
        yield {**node, "unknownField": "x"}
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield node[:i] + node[i + 1 :]
            for changed in one_change(value):
                yield [*node[:i], changed, *node[i + 1 :]]
        if node:
            yield [*node, node[0]]


FCM_FULL: dict[str, Any] = copy.deepcopy(FCM_OK)
FCM_FULL["message"]["android"].update(
    ttl="60s",
    collapse_key="db",
    notification={"notificationCount": 3, "eventTime": "2026-12-03T14:00:00Z"},
)
FCM_FULL["message"]["webpush"] = {"headers": {"Urgency": "high"}}
CARD_NESTED: dict[str, Any] = copy.deepcopy(CARD)
CARD_NESTED["body"].append({"type": "Container", "items": [{"type": "Image", "url": "u"}]})


def _verdicts(
    bodies: list[Any], plain: Callable[[Any], bool], compiled: Callable[[Any], bool]
) -> tuple[list[Any], int]:
    """The bodies the two readings disagree on, and how many bodies were refused."""
    disagree, refused = [], 0
    for body in bodies:
        verdict = plain(body)
        refused += not verdict
        if compiled(body) is not verdict:
            disagree.append(body)
    return disagree, refused


@pytest.mark.parametrize(
    ("base", "kind"),
    [
        (FCM_OK, "fcm"),
        (FCM_FULL, "fcm"),
        (SENDGRID_OK, "sendgrid"),
        (CARD, "card"),
        (CARD_NESTED, "card"),
    ],
    ids=["fcm", "fcm-more-fields", "sendgrid", "card", "card-nested"],
)
def test_json_bodies_get_the_same_verdict_from_both_readings(
    base: dict[str, Any], kind: str
) -> None:
    plain, compiled = {
        "fcm": (fcm_validator(), fcm_compiled()),
        "sendgrid": (sendgrid_validator(), sendgrid_compiled()),
        "card": (adaptive_card_validator(), adaptive_card_compiled()),
    }[kind]
    # FCM's check reads a null as the field left out, before either reading
    prepare = _without_nulls if kind == "fcm" else (lambda body: body)
    assert plain.is_valid(prepare(base)), "the unchanged body must pass"
    bodies = [base, *one_change(base)]
    disagree, refused = _verdicts(
        bodies,
        lambda body: bool(plain.is_valid(prepare(body))),
        lambda body: bool(compiled.is_valid(prepare(body))),
    )
    assert disagree == []
    assert 0 < refused < len(bodies)


FORM_VALUES = [
    "",
    "x",
    "7",
    "-1",
    "1.5",
    "true",
    "False",
    "GET",
    "PUT",
    "completed",
    "retain",
    "+14155550101",
    "https://example.com/a",
    "/relative",
    "2026-12-03T14:00:00Z",
    "tomorrow",
    "MG" + "0" * 32,
    "AP1",
]


@pytest.mark.parametrize(
    ("resource", "base"), [("Messages", TWILIO_SMS), ("Calls", TWILIO_CALL)], ids=["sms", "call"]
)
def test_twilio_forms_get_the_same_verdict_from_both_readings(
    resource: str, base: dict[str, list[str]]
) -> None:
    names = set(_twilio_schema(resource)["properties"]) | set(base)
    assert twilio_validator(resource).is_valid(twilio_form(resource, base))
    forms = [base]
    forms += [{k: v for k, v in base.items() if k != name} for name in base]
    forms += [{**base, name: [value]} for name in sorted(names) for value in FORM_VALUES]
    forms += [{**base, name: [FORM_VALUES[1], FORM_VALUES[2]]} for name in sorted(names)]
    disagree, refused = _verdicts(
        forms,
        lambda form: bool(twilio_validator(resource).is_valid(twilio_form(resource, form))),
        lambda form: bool(twilio_compiled(resource).is_valid(twilio_form(resource, form))),
    )
    assert disagree == []
    assert 0 < refused < len(forms)
