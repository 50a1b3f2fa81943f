"""Acknowledging by SMS reply: the short code each alert SMS carries, what a reply says, and
what it does given the person's open incidents. Pure functions; the bridge does the I/O.

A short code is four digits derived from the incident id, so the alert SMS (sent without
knowing the person's other incidents) and the bridge (which knows them) agree on it without
storing anything. Two open incidents of one person rarely share four digits (about 1 in
2,000 for five open incidents); when they do, their codes grow a digit at a time until they
differ, and a reply naming the shorter code is answered with the longer ones.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CODE_LENGTH = 4
ACK_WORDS = frozenset({"ACK", "ACKNOWLEDGE"})
# "1" alone, or a word: "ACK", "ACK 4821", "ack #4821", "ACK4821"
_REPLY = re.compile(rf"^(?:1|(?P<word>[A-Z]+)(?:\s*#?\s*(?P<code>\d{{{CODE_LENGTH},}}))?)$")


def _digits(incident_id: str) -> str:
    # a byte of 250..255 would make 0..5 likelier than 6..9: skipped (31 digits remain,
    # on average, far more than any set of open incidents needs)
    digest = hashlib.sha256(incident_id.encode()).digest()
    return "".join(str(b % 10) for b in digest if b < 250)


def short_code(incident_id: str) -> str:
    """The code an alert SMS carries for `incident_id`: four digits of its hash."""
    return _digits(incident_id)[:CODE_LENGTH]


def short_codes(incident_ids: Iterable[str]) -> dict[str, str]:
    """Each incident's code among `incident_ids`: four digits, longer where two would be
    the same, so that no code is the prefix of another."""
    full = {i: _digits(i) for i in sorted(set(incident_ids))}
    codes: dict[str, str] = {}
    for incident, digits in full.items():
        length = CODE_LENGTH
        while any(
            other != incident and theirs.startswith(digits[:length])
            for other, theirs in full.items()
        ) and length < len(digits):
            length += 1
        codes[incident] = digits[:length]
    return codes


def matching(code: str, incident_ids: Iterable[str]) -> list[str]:
    """The incidents whose code starts with `code` (a code from an older SMS still works
    after a colliding incident made the codes longer)."""
    return sorted(i for i in set(incident_ids) if _digits(i).startswith(code))


def sms_reply_hint(incident_id: str, several: bool = False) -> str:
    """What an alert SMS ends with when replies reach the bridge; an SMS naming `several`
    incidents (a throttle's bundle) asks for "1", answered with the list of codes."""
    if several:
        return " Reply 1 to acknowledge"
    return f" Reply ACK {short_code(incident_id)} to acknowledge"


# the room an alert SMS keeps for the hint, so text and hint stay in one segment
SMS_REPLY_ROOM = len(sms_reply_hint(""))


@dataclass(frozen=True)
class Reply:
    """What an SMS reply asks for: to acknowledge (the incident named by `code`, or the only
    open one), or nothing we understand (`understood` False)."""

    understood: bool
    code: str | None = None


def parse_reply(body: str) -> Reply:
    """Read an SMS reply: "1" or "ACK" alone, or either followed by a short code."""
    text = " ".join(body.strip().upper().split())
    text = text.rstrip(".!")
    found = _REPLY.match(text)
    if found is None or (found["word"] is not None and found["word"] not in ACK_WORDS):
        return Reply(understood=False)
    return Reply(understood=True, code=found["code"])


@dataclass(frozen=True)
class Outcome:
    """What the bridge does with a reply: acknowledge `incident_id`, or only answer."""

    answer: str
    incident_id: str | None = None


def decide(reply: Reply, known: bool, open_incidents: Mapping[str, str]) -> Outcome:
    """The outcome of `reply` from a person (`known`: the sender's number is someone's) with
    `open_incidents` ({incident id: title}, alerted to them and not yet acknowledged)."""
    if not known:
        return Outcome("This number is not registered with the incident notifier.")
    codes = short_codes(open_incidents)
    listed = "; ".join(
        f"ACK {codes[i]} {_clip(open_incidents[i])}" for i in sorted(codes, key=lambda i: codes[i])
    )
    if not reply.understood:
        if not open_incidents:
            return Outcome("Not understood. You have no open incidents.")
        return Outcome(f"Not understood. Reply 1 or ACK <code> to acknowledge: {listed}")
    if not open_incidents:
        return Outcome("Nothing to acknowledge: you have no open incidents.")
    if reply.code is None:
        if len(open_incidents) == 1:
            (only,) = open_incidents
            return Outcome(f"Acknowledged: {_clip(open_incidents[only])}", only)
        return Outcome(f"You have {len(open_incidents)} open incidents. Reply: {listed}")
    found = matching(reply.code, open_incidents)
    if len(found) == 1:
        return Outcome(f"Acknowledged: {_clip(open_incidents[found[0]])}", found[0])
    if not found:
        return Outcome(f"No open incident has code {reply.code}. Reply: {listed}")
    return Outcome(f"Code {reply.code} fits several incidents. Reply: {listed}")


def _clip(title: str, limit: int = 40) -> str:
    return title if len(title) <= limit else title[: limit - 3].rstrip() + "..."
