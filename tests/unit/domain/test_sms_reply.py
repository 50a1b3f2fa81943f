"""SMS replies: short codes, what a reply says, and what it does, as tables."""

from __future__ import annotations

import pytest

from notifier.domain.sms_reply import (
    CODE_LENGTH,
    SMS_REPLY_ROOM,
    Outcome,
    Reply,
    decide,
    matching,
    parse_reply,
    short_code,
    short_codes,
    sms_reply_hint,
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("1", Reply(True)),
        (" 1 ", Reply(True)),
        ("1.", Reply(True)),
        ("ACK", Reply(True)),
        ("ack", Reply(True)),
        ("Acknowledge!", Reply(True)),
        ("ACK 4821", Reply(True, "4821")),
        ("ack #4821", Reply(True, "4821")),
        ("ACK4821", Reply(True, "4821")),
        ("  ack   48213 ", Reply(True, "48213")),
        ("ACK 48", Reply(False)),  # shorter than any code
        ("1 4821", Reply(False)),
        ("14821", Reply(False)),
        ("2", Reply(False)),
        ("", Reply(False)),
        ("STOP", Reply(False)),
        ("ACK 4821 please", Reply(False)),
        ("yes", Reply(False)),
    ],
)
def test_parse_reply(body: str, expected: Reply) -> None:
    assert parse_reply(body) == expected


def test_short_code_is_four_digits_and_stable() -> None:
    code = short_code("inc-42")
    assert len(code) == CODE_LENGTH and code.isdigit()
    assert short_code("inc-42") == code
    assert short_code("inc-43") != code


def _colliding() -> tuple[str, str]:
    # two ids whose four-digit codes are the same: found by search, as a real collision is
    seen: dict[str, str] = {}
    for n in range(100_000):
        incident = f"inc-{n}"
        other = seen.setdefault(short_code(incident), incident)
        if other != incident:
            return other, incident
    raise AssertionError("no collision in 100,000 ids")


A, B = _colliding()


@pytest.mark.parametrize(
    ("ids", "lengths"),
    [
        ([], {}),
        (["inc-1"], {"inc-1": 4}),
        (["inc-1", "inc-2", "inc-3"], {"inc-1": 4, "inc-2": 4, "inc-3": 4}),
        ([A, B], {A: None, B: None}),  # longer than four, and different
        ([A, B, "inc-1"], {A: None, B: None, "inc-1": 4}),
    ],
)
def test_short_codes_are_unique_among_a_persons_open_incidents(
    ids: list[str], lengths: dict[str, int | None]
) -> None:
    codes = short_codes(ids)
    assert set(codes) == set(ids)
    assert len(set(codes.values())) == len(codes)
    for incident, code in codes.items():
        assert code.startswith(short_code(incident))
        assert not any(o.startswith(code) for i, o in codes.items() if i != incident)
        if lengths[incident] is None:
            assert len(code) > CODE_LENGTH
        else:
            assert len(code) == lengths[incident]


def test_the_four_digit_code_of_colliding_incidents_matches_both() -> None:
    assert matching(short_code(A), [A, B, "inc-1"]) == sorted([A, B])
    assert matching(short_codes([A, B])[A], [A, B]) == [A]


ONE = {"inc-1": "db down"}
TWO = {"inc-1": "db down", "inc-2": "disk full"}
C1, C2 = short_code("inc-1"), short_code("inc-2")


@pytest.mark.parametrize(
    ("reply", "known", "open_incidents", "acknowledged", "answer_has"),
    [
        (Reply(True), False, ONE, None, "not registered"),
        (Reply(True), True, {}, None, "no open incidents"),
        (Reply(True), True, ONE, "inc-1", "Acknowledged: db down"),
        (Reply(True, C1), True, ONE, "inc-1", "Acknowledged: db down"),
        (Reply(True), True, TWO, None, f"2 open incidents. Reply: ACK {min(C1, C2)}"),
        (Reply(True, C2), True, TWO, "inc-2", "Acknowledged: disk full"),
        (Reply(True, "0000" if "0000" not in (C1, C2) else "9999"), True, TWO, None, "No open"),
        (Reply(True, short_code(A)), True, {A: "a", B: "b"}, None, "fits several"),
        (Reply(True, short_codes([A, B])[B]), True, {A: "a", B: "b"}, B, "Acknowledged: b"),
        (Reply(False), True, TWO, None, "Not understood. Reply 1 or ACK <code>"),
        (Reply(False), True, {}, None, "Not understood. You have no open incidents."),
    ],
)
def test_decide(
    reply: Reply,
    known: bool,
    open_incidents: dict[str, str],
    acknowledged: str | None,
    answer_has: str,
) -> None:
    outcome = decide(reply, known, open_incidents)
    assert outcome.incident_id == acknowledged
    assert answer_has in outcome.answer, outcome.answer


def test_a_reply_listing_codes_names_each_incident() -> None:
    outcome = decide(Reply(True), True, TWO)
    assert f"ACK {C1} db down" in outcome.answer and f"ACK {C2} disk full" in outcome.answer
    assert outcome == Outcome(outcome.answer, None)


def test_the_hint_fits_the_room_alerts_keep_for_it() -> None:
    hint = sms_reply_hint("inc-1")
    assert hint == f" Reply ACK {C1} to acknowledge"
    assert len(hint) == SMS_REPLY_ROOM
