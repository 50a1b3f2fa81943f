"""Per-person throttles: at most so many messages per (user, channel) in layered windows.

What is over a limit is held, never dropped: when the windows open again the held messages
go out as ONE bundled message that names every incident it carries. A CRITICAL incident's
first alert to the person on the channel does not wait (it is sent at once, and counted),
nor does an operator's resend. Pure rules: the throttle agent (processors/throttle.py) keeps
a `ThrottleState` per `user|channel` in a Faust table, as the JSON of `to_json`.

The windows come from `NOTIFIER_THROTTLES`, e.g. `SMS=5/900,20/3600;VOICE=3/900`: for SMS
at most 5 messages in any 15 minutes and 20 in any hour, for voice 3 calls in 15 minutes.

The same holding serves quiet hours (notifier/domain/quiet_hours.py): a command whose
`not_before` is still to come (the end of the person's quiet hours) is held, on any
channel, until then, and goes out in the bundle of what was held.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from notifier.contracts.convert import from_json, to_avro
from notifier.contracts.records import Channel, NotificationKind, Priority, SendCommand
from notifier.domain.dispatch import PRIORITY_RANK
from notifier.domain.sms_reply import SMS_REPLY_ROOM
from notifier.domain.templates import SMS_SEGMENT, gsm_safe, septets

DEFAULT_THROTTLES = "SMS=5/900,20/3600;VOICE=3/900"
SEEN_FOR_S = 24 * 3600  # how long an incident counts as already messaged (CRITICAL bypass)
SEEN_MAX = 1000  # incidents remembered per user and channel, newest kept

# (soft, hard) length of a bundle's body per channel: the text is shortened to fit the soft
# limit as far as titles allow; a bundle never exceeds the hard one (Twilio refuses SMS over
# 1600 characters; a call reads out 1000), so a very long backlog goes out over several
# windows rather than in one message that would fail
BODY_LIMITS: Mapping[Channel, tuple[int, int]] = {
    Channel.SMS: (SMS_SEGMENT, 1600),
    Channel.VOICE: (1000, 1000),
    Channel.PUSH: (240, 4000),
    Channel.SLACK: (3000, 40000),
}
DEFAULT_BODY_LIMITS = (4000, 100_000)
TITLE_CAPS = (60, 40, 24, 16, 12)  # short titles tried, longest first
_PRIORITY_TAG = re.compile(r"^\[[A-Z]+\]\s*")


@dataclass(frozen=True)
class Window:
    """At most `limit` messages in any `seconds`."""

    limit: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.limit}/{self.seconds}"


Windows = Mapping[Channel, tuple[Window, ...]]


def parse_throttles(text: str) -> dict[Channel, tuple[Window, ...]]:
    """The windows of each channel from `SMS=5/900,20/3600;VOICE=3/900` (spaces ignored;
    empty text: no throttle at all). ValueError naming the part that is wrong."""
    windows: dict[Channel, tuple[Window, ...]] = {}
    for part in text.replace(" ", "").split(";"):
        if not part:
            continue
        name, sep, spec = part.partition("=")
        try:
            channel = Channel(name.upper())
        except ValueError:
            names = ", ".join(c.value for c in Channel)
            raise ValueError(f"{part!r}: {name!r} is not a channel ({names})") from None
        if not sep or not spec:
            raise ValueError(f"{part!r}: expected {name}=limit/seconds[,limit/seconds...]")
        if channel in windows:
            raise ValueError(f"{part!r}: {channel.value} is given twice")
        found: list[Window] = []
        for item in spec.split(","):
            limit, slash, seconds = item.partition("/")
            if not (slash and limit.isdigit() and seconds.isdigit()):
                raise ValueError(f"{part!r}: {item!r} is not limit/seconds, e.g. 5/900")
            window = Window(int(limit), int(seconds))
            if window.limit < 1 or window.seconds < 1:
                raise ValueError(f"{part!r}: {item!r} needs a limit and seconds of 1 or more")
            found.append(window)
        windows[channel] = tuple(sorted(found, key=lambda w: w.seconds))
    return windows


def format_throttles(windows: Windows) -> str:
    """The text `parse_throttles` reads back into `windows`."""
    return ";".join(
        f"{channel.value}={','.join(str(w) for w in found)}"
        for channel, found in windows.items()
        if found
    )


# --- state ------------------------------------------------------------------------------


def command_to_json(command: SendCommand) -> dict[str, Any]:
    """A held command as JSON (ISO-8601 times, enum values)."""
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in to_avro(command).items()
    }


def command_from_json(data: Mapping[str, Any]) -> SendCommand:
    """A held command back from `command_to_json`."""
    return from_json(SendCommand, dict(data))


@dataclass
class ThrottleState:
    """What the throttle keeps per (user, channel)."""

    # (unix time, command id) of every message sent, within the longest window
    sent: list[tuple[float, str]] = field(default_factory=list)
    # commands waiting for the windows to open, in arrival order
    held: list[SendCommand] = field(default_factory=list)
    # when the one flush timer in flight is due (None: none is)
    flush_due: float | None = None
    # the due time of the timer that scheduled `flush_due` (None: a new hold did), so a
    # timer handled twice schedules its successor again instead of taking it for stale
    flush_from: float | None = None
    # incident id -> when its first message here was seen (the CRITICAL bypass)
    seen: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form for the throttle table."""
        return {
            "sent": [[t, c] for t, c in self.sent],
            "held": [command_to_json(c) for c in self.held],
            "flush_due": self.flush_due,
            "flush_from": self.flush_from,
            "seen": dict(self.seen),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ThrottleState:
        """Back from the throttle table (a missing entry is a fresh state)."""
        if not data:
            return cls()
        due, since = data.get("flush_due"), data.get("flush_from")
        return cls(
            sent=[(float(t), str(c)) for t, c in data.get("sent", [])],
            held=[command_from_json(c) for c in data.get("held", [])],
            flush_due=float(due) if due is not None else None,
            flush_from=float(since) if since is not None else None,
            seen={str(k): float(v) for k, v in dict(data.get("seen", {})).items()},
        )


@dataclass(frozen=True)
class Decision:
    """What the throttle does now: send a message (a command or a bundle) or not, and
    schedule a flush timer or not. Neither: the command is held and a flush is on its way."""

    send: SendCommand | None = None
    flush_at: datetime | None = None

    @property
    def held(self) -> bool:
        """True when nothing goes out now."""
        return self.send is None


# --- windows ----------------------------------------------------------------------------


def _inside(sent: Sequence[tuple[float, str]], now: float, window: Window) -> list[float]:
    return sorted(t for t, _ in sent if now - window.seconds < t <= now)


def is_open(state: ThrottleState, now: datetime, windows: Sequence[Window]) -> bool:
    """True when one more message fits every window."""
    ts = now.timestamp()
    return all(len(_inside(state.sent, ts, w)) < w.limit for w in windows)


def opens_at(state: ThrottleState, now: datetime, windows: Sequence[Window]) -> datetime:
    """When one more message fits every window again (`now` if it already does)."""
    ts = now.timestamp()
    due = ts
    for window in windows:
        inside = _inside(state.sent, ts, window)
        if len(inside) >= window.limit:
            # it opens when all but limit-1 of these have left the window
            due = max(due, inside[len(inside) - window.limit] + window.seconds)
    return datetime.fromtimestamp(due, UTC)


def _pruned(state: ThrottleState, now: datetime, windows: Sequence[Window]) -> ThrottleState:
    ts = now.timestamp()
    longest = max((w.seconds for w in windows), default=0)
    seen = {i: t for i, t in state.seen.items() if t > ts - SEEN_FOR_S}
    if len(seen) > SEEN_MAX:
        seen = dict(sorted(seen.items(), key=lambda item: item[1])[-SEEN_MAX:])
    return dataclasses.replace(
        state,
        sent=[(t, c) for t, c in state.sent if t > ts - longest],
        held=list(state.held),
        seen=seen,
    )


def waits(command: SendCommand, now: datetime) -> bool:
    """Held for the person's quiet hours: not to go out before its `not_before`."""
    return command.not_before is not None and command.not_before > now


def _ready(held: Sequence[SendCommand], now: datetime) -> list[SendCommand]:
    return [c for c in held if not waits(c, now)]


def next_due(state: ThrottleState, now: datetime, windows: Sequence[Window]) -> datetime:
    """When the next held command may go out: the windows open and its quiet hours over."""
    earliest = min(
        (max(c.not_before, now) if c.not_before is not None else now for c in state.held),
        default=now,
    )
    return max(opens_at(state, now, windows), earliest)


def _schedule(state: ThrottleState, due: datetime) -> Decision:
    """A flush at `due`, unless the one already in flight comes no later (it reschedules
    what it cannot send)."""
    if state.flush_due is not None and state.flush_due <= due.timestamp():
        return Decision()
    state.flush_due, state.flush_from = due.timestamp(), None
    return Decision(flush_at=due)


def bypasses(command: SendCommand, first: bool) -> bool:
    """A CRITICAL incident's first alert to the person, or an operator's resend: sent at
    once even when a window is full (and counted)."""
    critical_first = (
        first and command.priority is Priority.CRITICAL and command.kind is NotificationKind.ALERT
    )
    return critical_first or bool(command.requested_by)


# --- decisions --------------------------------------------------------------------------


def decide(
    state: ThrottleState, command: SendCommand, now: datetime, windows: Windows
) -> tuple[ThrottleState, Decision]:
    """The state after `command` arrives at `now`, and whether it goes out now or waits.

    Within every window of its channel it is sent (and counted). Over a limit it is held;
    the first hold schedules a flush for when the windows open. When the windows are open
    but messages are still held (their flush is on its way), it goes out at once with them,
    in one bundle. A command seen again (a redelivered input) is not counted twice.
    """
    found = windows.get(command.channel, ())
    state = _pruned(state, now, found)
    ts = now.timestamp()
    first = command.incident_id not in state.seen
    state.seen.setdefault(command.incident_id, ts)
    if any(c == command.command_id for _, c in state.sent):
        return state, Decision(send=command)  # redelivered after it was sent: emit again
    if any(h.command_id == command.command_id for h in state.held):
        # redelivered while held: the timer may not have gone out the first time
        return state, Decision(flush_at=_when(state.flush_due))
    if waits(command, now):
        # quiet hours: held until its not_before, whatever the windows say
        state.held.append(command)
        return state, _schedule(state, next_due(state, now, found))
    if bypasses(command, first):
        state.sent.append((ts, command.command_id))
        return state, Decision(send=command)
    if is_open(state, now, found):
        if _ready(state.held, now):
            state.held.append(command)
            return _release(state, now, found)
        state.sent.append((ts, command.command_id))
        return state, Decision(send=command)
    state.held.append(command)
    # the flush already on its way takes this one too, unless it waits for quiet hours
    # to end after the windows open
    return state, _schedule(state, next_due(state, now, found))


def flush(
    state: ThrottleState, channel: Channel, due_at: datetime, now: datetime, windows: Windows
) -> tuple[ThrottleState, Decision]:
    """The state after the flush timer due at `due_at` arrives at `now`, and what goes out.

    Windows open and messages held: one bundle of them goes out (counted as one message).
    Still closed: the flush is scheduled again, for when they open. A timer older than the
    one in flight (its flush was overtaken) does nothing.
    """
    found = windows.get(channel, ())
    state = _pruned(state, now, found)
    due = due_at.timestamp()
    if not state.held:
        state.flush_due = state.flush_from = None
        return state, Decision()
    if is_open(state, now, found) and _ready(state.held, now):
        return _release(state, now, found)
    if state.flush_due is not None and state.flush_due > due:
        if state.flush_from == due:  # this timer was handled before: its successor again
            return state, Decision(flush_at=_when(state.flush_due))
        return state, Decision()  # a stale timer: the one in flight comes later
    later = next_due(state, now, found)
    state.flush_due, state.flush_from = later.timestamp(), due
    return state, Decision(flush_at=later)


def _release(
    state: ThrottleState, now: datetime, windows: Sequence[Window]
) -> tuple[ThrottleState, Decision]:
    """Send the held commands that may go out as one bundle (as many as one message can
    carry); those still in quiet hours stay held."""
    ready = _ready(state.held, now)
    # alerts and notices go in separate bundles: a bundle's members are cancelled when
    # their incident is closed (processors/channels.py), which a notice's always is
    notices = ready[0].kind is not NotificationKind.ALERT
    ready = [c for c in ready if (c.kind is not NotificationKind.ALERT) is notices]
    count = bundle_size(ready, ready[0].channel)
    taken = {c.command_id for c in ready[:count]}
    message = bundle(ready[:count], now)
    state.held = [c for c in state.held if c.command_id not in taken]
    state.sent.append((now.timestamp(), message.command_id))
    state.flush_due = state.flush_from = None
    if not state.held:
        return state, Decision(send=message)
    due = next_due(state, now, windows)
    state.flush_due = due.timestamp()
    return state, Decision(send=message, flush_at=due)


def _when(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


# --- bundles ----------------------------------------------------------------------------


def short_title(command: SendCommand) -> str:
    """The incident's title as a message shows it, without the priority tag."""
    return _PRIORITY_TAG.sub("", command.title).strip() or command.incident_id


def _cut(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[: cap - 2].rstrip() + ".."


def _incidents(held: Sequence[SendCommand]) -> list[tuple[str, str]]:
    """(incident id, short title) of every held incident, first seen first; the title of
    its latest message (a notice says 'Resolved: ...')."""
    titles: dict[str, str] = {}
    for command in held:
        titles[command.incident_id] = short_title(command)
    return list(titles.items())


def _text(
    channel: Channel, priority: Priority, incidents: Sequence[tuple[str, str]], cap: int
) -> str:
    (lead_id, lead_title), more = incidents[0], incidents[1:]
    plural = "s" if len(more) > 1 else ""
    if channel is Channel.SMS:
        items = "; ".join(f"{i} {_cut(t, cap)}" for i, t in more)
        return gsm_safe(
            f"[{priority.value}] {_cut(lead_title, cap)} ({lead_id}); "
            f"{len(more)} more incident{plural}: {items}"
        )
    if channel is Channel.VOICE:
        items = " ".join(f"Incident {i}: {_cut(t, cap)}." for i, t in more)
        return (
            f"This is the incident notifier. {priority.value}. {_cut(lead_title, cap)}, "
            f"incident {lead_id}. {len(more)} more incident{plural}. {items}"
        )
    lines = "\n".join(f"- {i}: {_cut(t, cap)}" for i, t in more)
    return (
        f"[{priority.value}] {_cut(lead_title, cap)} ({lead_id})\n\n"
        f"{len(more)} more incident{plural}:\n{lines}"
    )


def bundle_text(channel: Channel, priority: Priority, held: Sequence[SendCommand]) -> str:
    """The body of one message naming every held incident: the longest short titles that
    keep it within the channel's soft limit, else the shortest (no incident is left out)."""
    incidents = _incidents(held)
    soft, _ = BODY_LIMITS.get(channel, DEFAULT_BODY_LIMITS)
    if channel is Channel.SMS:
        soft -= SMS_REPLY_ROOM  # the adapter may add "Reply 1 to acknowledge"
    text = ""
    for cap in TITLE_CAPS:
        text = _text(channel, priority, incidents, cap)
        if septets(text) <= soft:
            break
    return text


def bundle_size(held: Sequence[SendCommand], channel: Channel) -> int:
    """How many of the held commands (the oldest first) one message can carry: all of them
    unless the text would pass the channel's hard limit. At least one."""
    _, hard = BODY_LIMITS.get(channel, DEFAULT_BODY_LIMITS)
    count = len(held)
    while count > 1 and len(_body(held[:count])) > hard:
        count -= 1
    return count


def highest_priority(held: Sequence[SendCommand]) -> Priority:
    """The most urgent priority among `held`."""
    return min((c.priority for c in held), key=lambda p: PRIORITY_RANK[p])


def _body(held: Sequence[SendCommand]) -> str:
    if len(_incidents(held)) == 1:
        return held[-1].body  # one incident: its latest message, as it was written
    return bundle_text(held[0].channel, highest_priority(held), held)


def bundle(held: Sequence[SendCommand], now: datetime) -> SendCommand:
    """ONE message for every held command (`now`: when it goes out, kept as not_before).

    It is the first held command (its notification id, attempt and address) with a text
    naming every held incident ("N more incidents: ..."), the highest priority among them,
    and `bundled` mapping each other notification to its incident, so their rows end SENT
    or FAILED with this message.
    """
    if not held:
        raise ValueError("nothing to bundle")
    lead = held[0]
    priority = highest_priority(held)
    incidents = _incidents(held)
    more = len(incidents) - 1
    title = lead.title if not more else f"[{priority.value}] {short_title(lead)} (+{more} more)"
    bundled = dict(lead.bundled)
    for command in held[1:]:
        if command.notification_id != lead.notification_id:
            bundled[command.notification_id] = command.incident_id
            bundled.update(command.bundled)
    return dataclasses.replace(
        lead,
        title=title,
        body=_body(held),
        priority=priority,
        bundled=bundled,
        not_before=now,
    )
