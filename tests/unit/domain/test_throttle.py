"""Per-person throttles: windows, holds, the CRITICAL bypass, flushes, bundles, restarts."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from notifier.contracts.records import Channel, NotificationKind, Priority, SendCommand, Tier
from notifier.domain import ids
from notifier.domain.templates import SMS_SEGMENT, gsm_safe
from notifier.domain.throttle import (
    DEFAULT_THROTTLES,
    Decision,
    ThrottleState,
    Window,
    bundle,
    bundle_size,
    decide,
    flush,
    format_throttles,
    opens_at,
    parse_throttles,
)
from notifier.settings import Settings

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
DEFAULTS = parse_throttles(DEFAULT_THROTTLES)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def command(
    incident: str,
    channel: Channel = Channel.SMS,
    priority: Priority = Priority.HIGH,
    *,
    user: str = "u1",
    level: int = 1,
    kind: NotificationKind = NotificationKind.ALERT,
    title: str | None = None,
    requested_by: str | None = None,
) -> SendCommand:
    nid = ids.notification_id(incident, level, user, channel, kind=kind)
    headline = f"[{priority.value}] {title or 'db down ' + incident}"
    return SendCommand(
        command_id=ids.command_id(nid, 1),
        notification_id=nid,
        incident_id=incident,
        user_id=user,
        channel=channel,
        tier=Tier.SECONDARY,
        escalation_level=level,
        attempt=1,
        priority=priority,
        kind=kind,
        address="+14155550101",
        title=headline,
        body=gsm_safe(headline),
        incident_at=T0,
        requested_by=requested_by,
    )


# --- settings ---------------------------------------------------------------------------


def test_the_default_is_the_issues_numbers() -> None:
    assert DEFAULT_THROTTLES == "SMS=5/900,20/3600;VOICE=3/900"
    assert {
        Channel.SMS: (Window(5, 900), Window(20, 3600)),
        Channel.VOICE: (Window(3, 900),),
    } == DEFAULTS
    assert format_throttles(DEFAULTS) == DEFAULT_THROTTLES
    assert Settings().throttles == DEFAULT_THROTTLES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("sms=2/60", {Channel.SMS: (Window(2, 60),)}),
        (" SMS = 20/3600 , 5/900 ; ", {Channel.SMS: (Window(5, 900), Window(20, 3600))}),
        (
            "EMAIL=10/60;VOICE=1/30",
            {Channel.EMAIL: (Window(10, 60),), Channel.VOICE: (Window(1, 30),)},
        ),
    ],
)
def test_windows_are_parsed(text: str, expected: dict[Channel, tuple[Window, ...]]) -> None:
    assert parse_throttles(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("FAX=1/60", "not a channel"),
        ("SMS", "limit/seconds"),
        ("SMS=5", "not limit/seconds"),
        ("SMS=five/900", "not limit/seconds"),
        ("SMS=0/900", "1 or more"),
        ("SMS=5/0", "1 or more"),
        ("SMS=5/-9", "not limit/seconds"),
        ("SMS=5/900;SMS=6/60", "twice"),
    ],
)
def test_bad_windows_are_refused(
    text: str, complaint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_throttles(text)
    monkeypatch.setenv("NOTIFIER_THROTTLES", text)
    with pytest.raises(ValidationError, match="throttles"):
        Settings()


# --- a small driver: every step goes through JSON, as after a restart ---------------------


@dataclass
class Step:
    """What one input did: S sent (the command itself), B a bundle, H held; +T a timer."""

    what: str
    decision: Decision


class Person:
    def __init__(self, windows: Any = DEFAULTS, through_json: bool = True) -> None:
        self.windows = windows
        self.through_json = through_json
        self.stored: Any = None
        self.timers: list[datetime] = []
        self.out: list[tuple[float, SendCommand]] = []

    @property
    def state(self) -> ThrottleState:
        if self.through_json:
            return ThrottleState.from_json(json.loads(self.stored) if self.stored else None)
        return self.stored or ThrottleState()

    def keep(self, state: ThrottleState) -> None:
        self.stored = json.dumps(state.to_json()) if self.through_json else state

    def step(self, state: ThrottleState, decision: Decision, now: datetime) -> Step:
        self.keep(state)
        what = "H"
        if decision.send is not None:
            what = "B" if decision.send.bundled else "S"
            self.out.append(((now - T0).total_seconds(), decision.send))
        if decision.flush_at is not None:
            self.timers.append(decision.flush_at)
            what += "+T"
        return Step(what, decision)

    def send(self, cmd: SendCommand, seconds: float) -> Step:
        state, decision = decide(self.state, cmd, at(seconds), self.windows)
        return self.step(state, decision, at(seconds))

    def timer(
        self, due: datetime, seconds: float | None = None, channel: Channel = Channel.SMS
    ) -> Step:
        now = due if seconds is None else at(seconds)
        state, decision = flush(self.state, channel, due, now, self.windows)
        return self.step(state, decision, now)

    def run_timers(self, channel: Channel = Channel.SMS) -> list[Step]:
        """Deliver every timer at its due time, as the retry scheduler does, until none is left."""
        steps = []
        while self.timers:
            due = self.timers.pop(0)
            steps.append(self.timer(due, channel=channel))
        return steps


@pytest.mark.parametrize("through_json", [True, False])
@pytest.mark.parametrize(
    ("channel", "times", "expected"),
    [
        # SMS: 5 in 15 minutes
        (Channel.SMS, [0, 1, 2, 3, 4], "S S S S S"),
        (Channel.SMS, [0, 1, 2, 3, 4, 5, 6], "S S S S S H+T H"),
        # the first leaves the window at 900: one more fits, not two
        (Channel.SMS, [0, 60, 120, 180, 240, 900, 901], "S S S S S S H+T"),
        # voice: 3 in 15 minutes
        (Channel.VOICE, [0, 10, 20, 30], "S S S H+T"),
        (Channel.VOICE, [0, 10, 20, 900], "S S S S"),
        # channels without windows are never held
        (Channel.EMAIL, [0, 0, 0, 0, 0, 0, 0, 0], "S S S S S S S S"),
    ],
)
def test_limits_per_window(
    channel: Channel, times: list[float], expected: str, through_json: bool
) -> None:
    person = Person(through_json=through_json)
    steps = [person.send(command(f"inc-{n}", channel), t) for n, t in enumerate(times)]
    assert " ".join(s.what for s in steps) == expected


@pytest.mark.parametrize(
    ("times", "expected", "timer"),
    [
        # 3 a minute, 5 in ten minutes: at 62 the minute has room, the ten minutes do not
        ([0, 1, 2, 60, 61, 62], "S S S S S H+T", 600),
        ([0, 1, 2, 3], "S S S H+T", 60),
        ([0, 1, 2, 60, 61, 600], "S S S S S S", None),
    ],
)
def test_layered_windows(times: list[float], expected: str, timer: float | None) -> None:
    person = Person(parse_throttles("SMS=3/60,5/600"))
    steps = [person.send(command(f"inc-{n}"), t) for n, t in enumerate(times)]
    assert " ".join(s.what for s in steps) == expected
    assert person.timers == ([at(timer)] if timer is not None else [])


def test_the_hour_limit_binds_once_critical_messages_went_past_the_quarter() -> None:
    # 5 in 15 minutes makes 20 an hour at most: only bypasses can bring the hour to its limit
    person = Person()
    for n in range(5):
        assert person.send(command(f"inc-{n}"), n).what == "S"
    for n in range(15):
        crit = command(f"inc-c{n}", priority=Priority.CRITICAL)
        assert person.send(crit, 10 + n).what == "S"
    # the quarter is empty again, the hour is not
    assert person.send(command("inc-late"), 925).what == "H+T"
    assert person.timers == [at(3600)]
    assert [s.what for s in person.run_timers()] == ["S"]  # one held: its own message


def test_the_timer_is_due_when_every_window_has_room() -> None:
    state = ThrottleState(sent=[(at(t).timestamp(), f"c{t}") for t in (0, 10, 20, 30, 40)])
    sms = DEFAULTS[Channel.SMS]
    assert opens_at(state, at(50), sms) == at(900)
    # with 6 in the window (a CRITICAL bypass), two have to leave it
    state.sent.append((at(45).timestamp(), "critical"))
    assert opens_at(state, at(50), sms) == at(910)
    assert opens_at(ThrottleState(), at(50), sms) == at(50)


def test_held_messages_go_out_as_one_bundle_when_the_window_opens() -> None:
    person = Person()
    steps = [person.send(command(f"inc-{n}"), n) for n in range(12)]
    assert [s.what for s in steps] == ["S"] * 5 + ["H+T"] + ["H"] * 6
    assert person.timers == [at(900)]
    # the timer arrives: one message, counted; it carries the seven held notifications
    assert [s.what for s in person.run_timers()] == ["B"]
    sent = [c for _, c in person.out]
    assert len(sent) == 6
    carried = {sent[-1].notification_id, *sent[-1].bundled}
    assert carried == {command(f"inc-{n}").notification_id for n in range(5, 12)}
    assert not person.state.held and person.state.flush_due is None
    assert len(person.state.sent) == 6


def test_a_timer_that_finds_the_window_still_closed_schedules_again() -> None:
    person = Person()
    for n in range(7):
        person.send(command(f"inc-{n}"), n)
    # a CRITICAL first alert went out meanwhile and fills the window again
    person.send(command("inc-crit", priority=Priority.CRITICAL), 100)
    due = person.timers.pop()
    assert due == at(900)
    assert person.timer(due).what == "H+T"
    assert person.timers == [at(901)]
    assert person.timer(at(901)).what == "B"


def test_stale_and_repeated_timers_do_nothing_twice() -> None:
    person = Person()
    for n in range(7):
        person.send(command(f"inc-{n}"), n)
    first = person.timers.pop()
    person.send(command("inc-crit", priority=Priority.CRITICAL), 100)
    assert person.timer(first).what == "H+T"
    successor = person.timers.pop()
    # the same timer handled again (redelivered): its successor is scheduled again, same time
    assert person.timer(first, seconds=900.5).what == "H+T"
    assert person.timers.pop() == successor
    # an older timer (overtaken) does nothing
    assert person.timer(at(300)).what == "H"
    assert person.timer(successor).what == "B"
    # the successor delivered twice: nothing is held any more, nothing goes out
    assert person.timer(successor, seconds=905).what == "H"
    assert len(person.out) == 7  # 5 + the CRITICAL + one bundle


def test_a_command_arriving_when_the_window_opened_before_its_timer_takes_the_held_along() -> None:
    person = Person()
    for n in range(7):
        person.send(command(f"inc-{n}"), n)
    step = person.send(command("inc-late"), 950)
    assert step.what == "B"
    assert step.decision.send is not None
    carried = {step.decision.send.notification_id, *step.decision.send.bundled}
    assert command("inc-late").notification_id in carried and len(carried) == 3
    # the timer comes late and finds nothing held
    assert [s.what for s in person.run_timers()] == ["H"]


# --- the CRITICAL bypass ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (command("inc-c", priority=Priority.CRITICAL), "S"),
        (command("inc-h", priority=Priority.HIGH), "H+T"),
        (command("inc-i", priority=Priority.INFO), "H+T"),  # INFO waits like any other
        # a notice can wait, even of a CRITICAL incident
        (
            command("inc-c", priority=Priority.CRITICAL, kind=NotificationKind.RESOLVED_NOTICE),
            "H+T",
        ),
        # an operator's resend is what they asked for: now
        (command("inc-h", requested_by="ops@example.com"), "S"),
    ],
)
def test_what_bypasses_a_full_window(cmd: SendCommand, expected: str) -> None:
    person = Person()
    for n in range(5):
        person.send(command(f"inc-{n}"), n)
    assert person.send(cmd, 10).what == expected


def test_only_the_first_message_of_a_critical_incident_bypasses_and_it_is_counted() -> None:
    person = Person()
    for n in range(5):
        person.send(command(f"inc-{n}"), n)
    crit = "inc-crit"
    assert person.send(command(crit, priority=Priority.CRITICAL), 10).what == "S"
    assert len(person.state.sent) == 6  # counted
    # its next message (level 2) is not its first: held like any other
    assert person.send(command(crit, priority=Priority.CRITICAL, level=2), 20).what == "H+T"
    # counted: the window opens when two have left it, not one
    assert person.timers == [at(901)]
    # the first message of a CRITICAL incident already seen (held) earlier is not first either
    other = Person()
    for n in range(5):
        other.send(command(f"inc-{n}"), n)
    assert other.send(command("inc-up", priority=Priority.HIGH), 10).what == "H+T"
    assert other.send(command("inc-up", priority=Priority.CRITICAL, level=2), 11).what == "H"


def test_a_redelivered_command_is_not_counted_twice() -> None:
    person = Person()
    cmd = command("inc-0")
    assert person.send(cmd, 0).what == "S"
    assert person.send(cmd, 1).what == "S"  # emitted again (at least once), counted once
    assert len(person.state.sent) == 1
    for n in range(1, 6):
        person.send(command(f"inc-{n}"), n)
    held = command("inc-6")
    assert person.send(held, 7).what == "H"
    # redelivered while held: the timer in flight is emitted again, the command held once
    again = person.send(held, 8)
    assert again.what == "H+T" and again.decision.flush_at == at(900)
    assert [c.command_id for c in person.state.held].count(held.command_id) == 1


def test_restart_keeps_everything_held_and_when_it_goes_out() -> None:
    before = Person(through_json=False)
    for n in range(9):
        before.send(command(f"inc-{n}"), n * 10)
    stored = json.loads(json.dumps(before.stored.to_json()))
    after = ThrottleState.from_json(stored)
    assert after == before.stored
    assert [c.incident_id for c in after.held] == [f"inc-{n}" for n in range(5, 9)]
    assert after.held[0] == command("inc-5")
    _, decision = flush(after, Channel.SMS, at(900), at(900), DEFAULTS)
    assert decision.send is not None
    assert {decision.send.notification_id, *decision.send.bundled} == {
        command(f"inc-{n}").notification_id for n in range(5, 9)
    }


# --- bundles ----------------------------------------------------------------------------


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.VOICE, Channel.EMAIL, Channel.PUSH])
@pytest.mark.parametrize("count", [2, 3, 12, 40])
def test_a_bundle_names_every_held_incident(channel: Channel, count: int) -> None:
    held = [
        command(f"inc-{n:03d}", channel, title=f"service {n} error rate above threshold")
        for n in range(count)
    ]
    message = bundle(held[: bundle_size(held, channel)], at(900))
    carried = bundle_size(held, channel)
    for cmd in held[:carried]:
        assert cmd.incident_id in message.body
    assert message.notification_id == held[0].notification_id
    assert message.command_id == held[0].command_id and message.attempt == 1
    assert message.bundled == {c.notification_id: c.incident_id for c in held[1:carried]}
    assert f"{carried - 1} more incident" in message.body
    assert message.channel is channel and message.address == held[0].address


@pytest.mark.parametrize(
    ("count", "one_segment"),
    [(2, True), (4, True), (5, False), (12, False)],
)
def test_an_sms_bundle_is_short_but_leaves_no_incident_out(count: int, one_segment: bool) -> None:
    held = [
        command(f"inc-{n:012x}", title="checkout-api: error rate above 5%") for n in range(count)
    ]
    message = bundle(held, at(900))
    assert (len(message.body) <= SMS_SEGMENT) is one_segment
    assert message.body == gsm_safe(message.body)
    assert all(c.incident_id in message.body for c in held)
    assert "checkout" in message.body  # a short title, not the ids alone


def test_a_backlog_longer_than_one_sms_can_carry_goes_out_over_several_windows() -> None:
    held = [command(f"inc-{n:032x}") for n in range(80)]
    size = bundle_size(held, Channel.SMS)
    assert 10 < size < 80
    assert len(bundle(held[:size], at(0)).body) <= 1600
    # the rest stays held and gets a timer of its own
    state = ThrottleState(held=held)
    state, decision = flush(state, Channel.SMS, at(0), at(0), DEFAULTS)
    assert decision.send is not None and decision.flush_at is not None
    assert len(state.held) == 80 - size
    assert decision.flush_at == at(0)  # one of 5 used: there is room again at once


def test_bundle_priority_is_the_highest_and_one_incident_keeps_its_own_text() -> None:
    held = [
        command("inc-a", priority=Priority.LOW),
        command("inc-b", priority=Priority.CRITICAL, level=2),
        command("inc-c", priority=Priority.MEDIUM),
    ]
    message = bundle(held, at(900))
    assert message.priority is Priority.CRITICAL
    assert message.body.startswith("[CRITICAL] db down inc-a (inc-a); 2 more incidents: ")
    assert message.title == "[CRITICAL] db down inc-a (+2 more)"
    single = [command("inc-a"), command("inc-a", level=2)]
    alone = bundle(single, at(900))
    assert alone.body == single[-1].body and alone.title == single[0].title
    assert alone.bundled == {single[1].notification_id: "inc-a"}
    with pytest.raises(ValueError, match="nothing"):
        bundle([], at(0))


def test_info_gives_way_to_any_other_priority_in_a_bundle() -> None:
    held = [command("inc-a", priority=Priority.INFO), command("inc-b", priority=Priority.LOW)]
    message = bundle(held, at(900))
    assert message.priority is Priority.LOW
    assert message.body.startswith("[LOW] ")
    only_info = bundle(
        [command("inc-a", priority=Priority.INFO), command("inc-b", priority=Priority.INFO)],
        at(900),
    )
    assert only_info.priority is Priority.INFO


def test_a_voice_bundle_reads_out_every_incident() -> None:
    held = [command(f"inc-{n}", Channel.VOICE, title=f"disk {n} full") for n in range(4)]
    message = bundle(held, at(900))
    assert message.body.startswith("This is the incident notifier. HIGH. disk 0 full")
    assert "3 more incidents" in message.body
    assert all(f"Incident inc-{n}: disk {n} full." in message.body for n in range(1, 4))


# --- where the agent sends things (processors/throttle.py, the dispatcher's routing) ----


def test_the_agent_sends_on_keyed_by_incident_and_schedules_keyed_by_user() -> None:
    from notifier.contracts.records import ThrottleFlushDue
    from processors.throttle import flush_timer, state_key, throttle

    table: dict[str, Any] = {}
    sent = [throttle(command(f"inc-{n}"), table, DEFAULTS, at(n)) for n in range(6)]
    assert sent[:5] == [[("notify.sms", f"inc-{n}", command(f"inc-{n}"))] for n in range(5)]
    ((topic, key, timer),) = sent[5]
    assert (topic, key) == ("throttle.timers", "u1")
    assert isinstance(timer, ThrottleFlushDue) and timer.due_at == at(900)
    json.dumps(table[state_key("u1", Channel.SMS)])  # the table holds JSON
    # the same due time gives the same event id; at its time the held one goes out
    assert flush_timer("u1", Channel.SMS, at(900), at(7)).event_id == timer.event_id
    assert throttle(timer, table, DEFAULTS, at(900)) == [
        ("notify.sms", "inc-5", bundle([command("inc-5")], at(900)))
    ]


def test_the_dispatcher_sends_sms_and_voice_through_the_throttle() -> None:
    from notifier.domain.dispatch import Dispatch
    from processors.dispatcher import outgoing

    commands = [
        command("inc-1", channel) for channel in (Channel.SMS, Channel.VOICE, Channel.EMAIL)
    ]
    routes = [(topic, key) for topic, key, _ in outgoing(Dispatch(commands=commands))]
    assert routes == [
        ("notify.throttle", "u1"),
        ("notify.throttle", "u1"),
        ("notify.email", "inc-1"),
    ]
    only_sms = outgoing(Dispatch(commands=commands), throttled={Channel.SMS})
    assert [t for t, _, _ in only_sms] == ["notify.throttle", "notify.voice", "notify.email"]


# --- quiet hours: commands held until their not_before ------------------------------------


def quiet(incident: str, until: float, channel: Channel = Channel.SMS) -> SendCommand:
    """A command held for the person's quiet hours, which end `until` seconds after T0."""
    return dataclasses.replace(command(incident, channel), not_before=at(until))


@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.SMS])
def test_quiet_hours_hold_on_any_channel_and_release_one_bundle_at_their_end(
    channel: Channel,
) -> None:
    person = Person()
    steps = [person.send(quiet(f"inc-{n}", 3600, channel), n) for n in range(3)]
    assert [s.what for s in steps] == ["H+T", "H", "H"]
    assert person.timers == [at(3600)]
    # a CRITICAL alert (never held by quiet hours) goes through meanwhile, alone
    assert person.send(command("inc-crit", channel, Priority.CRITICAL), 10).what == "S"
    assert [s.what for s in person.run_timers(channel)] == ["B"]
    (when, message) = person.out[-1]
    assert when == 3600 and message.not_before == at(3600)
    assert {message.notification_id, *message.bundled} == {
        quiet(f"inc-{n}", 3600, channel).notification_id for n in range(3)
    }
    assert not person.state.held and person.state.flush_due is None


def test_a_command_not_held_does_not_take_quiet_hours_holds_along() -> None:
    person = Person()
    person.send(quiet("inc-q", 3600, Channel.EMAIL), 0)
    step = person.send(command("inc-now", Channel.EMAIL), 5)
    assert step.what == "S" and step.decision.send == command("inc-now", Channel.EMAIL)
    assert [c.incident_id for c in person.state.held] == ["inc-q"]


def test_a_throttle_flush_before_quiet_hours_end_leaves_the_quiet_ones_held() -> None:
    person = Person()
    for n in range(6):
        person.send(command(f"inc-{n}"), n)  # the sixth waits for the window (900)
    assert person.send(quiet("inc-q", 7200), 10).what == "H"  # the flush at 900 comes first
    assert person.timers == [at(900)]
    assert person.timer(person.timers.pop(0)).what == "S+T"  # inc-5 alone; then 7200
    assert person.out[-1][1].incident_id == "inc-5"
    assert person.timers == [at(7200)]
    assert person.timer(person.timers.pop(0)).what == "S"
    assert person.out[-1][1].incident_id == "inc-q"
    assert not person.state.held


def test_a_throttle_hold_during_quiet_hours_gets_its_own_earlier_flush() -> None:
    person = Person()
    assert person.send(quiet("inc-q", 7200), 0).what == "H+T"
    for n in range(5):
        assert person.send(command(f"inc-{n}"), 1 + n).what == "S"
    assert person.send(command("inc-over"), 10).what == "H+T"
    assert person.timers == [at(7200), at(901)]  # the first of the five leaves at 901
    assert person.timer(at(901)).what == "S+T"  # inc-over; the quiet one waits on
    assert person.out[-1][1].incident_id == "inc-over"
    assert person.timer(at(7200)).what == "S"
    assert person.out[-1][1].incident_id == "inc-q"
    # the 7200 timer scheduled twice: the second finds nothing held
    assert person.timer(at(7200)).what == "H"


def test_the_dispatcher_sends_quiet_hours_holds_through_the_throttle() -> None:
    from notifier.domain.dispatch import Dispatch
    from processors.dispatcher import outgoing

    commands = [command("inc-1", Channel.EMAIL), quiet("inc-2", 60, Channel.EMAIL)]
    routes = [(topic, key) for topic, key, _ in outgoing(Dispatch(commands=commands))]
    assert routes == [("notify.email", "inc-1"), ("notify.throttle", "u1")]


def test_held_alerts_and_notices_go_out_in_separate_bundles() -> None:
    # a bundle's members whose incident is closed are cancelled, and a notice's incident
    # always is: one bundle of both would lose the notices
    person = Person()
    notice = dataclasses.replace(
        command("inc-x", kind=NotificationKind.RESOLVED_NOTICE), not_before=at(3600)
    )
    for held in (quiet("inc-a", 3600), notice, quiet("inc-b", 3600)):
        person.send(held, 0)
    person.run_timers()
    bundles = [message for _, message in person.out]
    assert [(m.kind, {m.incident_id, *m.bundled.values()}) for m in bundles] == [
        (NotificationKind.ALERT, {"inc-a", "inc-b"}),
        (NotificationKind.RESOLVED_NOTICE, {"inc-x"}),
    ]
    assert not person.state.held
