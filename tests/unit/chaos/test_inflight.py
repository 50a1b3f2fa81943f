"""Provider-side duplicates per disruption: in flight, extra requests, and which disruption
explains each (notifier/chaos/inflight.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.chaos.inflight import (
    AttemptTimes,
    Disruption,
    disruptions_from_journal,
    extra_requests,
    in_flight,
    judge,
    life,
)

T0 = 1_800_000_000.0  # an epoch second; every time below is T0 + seconds


def kill(at: float) -> Disruption:
    return Disruption("kill", T0 + at, T0 + at, at, "worker 1")


def outage(began: float, ended: float, kind: str = "broker stop") -> Disruption:
    return Disruption(kind, T0 + began, T0 + ended, began)


def test_the_journal_gives_each_disruption_its_window() -> None:
    entries = [
        {"at_s": 0.0, "epoch": T0, "action": "drill starts"},
        {"at_s": 3.5, "epoch": T0 + 3.5, "action": "broker stopped", "node": 2, "took_s": 1.5},
        {"at_s": 6.0, "epoch": T0 + 6.0, "action": "SIGKILL worker", "worker": 1, "pid": 9},
        {"at_s": 12.0, "epoch": T0 + 12.0, "action": "postgres stopped", "took_s": 0.5},
        {"at_s": 13.0, "epoch": T0 + 13.0, "action": "broker started", "node": 2, "down_s": 9},
        {
            "at_s": 14.0,
            "epoch": T0 + 14.0,
            "action": "worker exited on its own",
            "worker": 2,
            "within_s": 5.0,
        },
        {"at_s": 20.0, "action": "an entry of an old journal, without a wall time"},
    ]
    got = disruptions_from_journal(entries, drill_end=T0 + 99)
    assert got == [
        Disruption("broker stop", T0 + 2.0, T0 + 13.0, 2.0, "node 2"),
        Disruption("kill", T0 + 6.0, T0 + 6.0, 6.0, "worker 1"),
        # found at 14 s, running 5 s before: it exited in between
        Disruption("worker exit", T0 + 9.0, T0 + 14.0, 9.0, "worker 2"),
        # no "postgres started" noted: the outage lasts until the drill ended
        Disruption("postgres stop", T0 + 11.5, T0 + 99, 11.5),
    ]
    assert got[1].label == "kill worker 1 @ 6.0 s"


@pytest.mark.parametrize(
    ("queued", "attempts", "ends", "expected"),
    [
        (None, [AttemptTimes(1, T0 + 1, T0 + 2)], [], None),  # never queued
        (T0, [AttemptTimes(1, T0 + 1, T0 + 2)], [T0 + 50], (T0, T0 + 2)),  # the log's times
        (T0, [AttemptTimes(1, T0 + 1, T0 + 2, T0 + 9)], [], (T0, T0 + 9)),  # sent again later
        (T0, [AttemptTimes(1, T0 + 1, T0 + 2), AttemptTimes(2, T0 + 4)], [], (T0, T0 + 4)),
        (T0, [AttemptTimes(1)], [T0 + 3, T0 + 5], (T0, T0 + 5)),  # no times: the sandbox's
        (T0, [], [], None),  # nothing says when it was done
    ],
)
def test_life(
    queued: float | None,
    attempts: list[AttemptTimes],
    ends: list[float],
    expected: tuple[float, float] | None,
) -> None:
    assert life(queued, attempts, ends) == expected


@pytest.mark.parametrize(
    ("span", "disruption", "expected"),
    [
        ((T0 + 0, T0 + 10), kill(5), True),
        ((T0 + 0, T0 + 10), kill(10), False),  # its last attempt finished as it was killed
        ((T0 + 0, T0 + 10), kill(0), True),  # queued as the kill came
        ((T0 + 6, T0 + 10), kill(5), False),  # queued after the kill
        ((T0 + 6, T0 + 10), outage(2, 8), True),  # queued while the broker was down
        ((T0 + 0, T0 + 3), outage(2, 8), True),  # finished while it was going down
        ((T0 + 0, T0 + 2), outage(2, 8), False),
        ((T0 + 9, T0 + 12), outage(2, 8), False),  # queued after it was back
        (None, kill(5), False),
    ],
)
def test_in_flight(
    span: tuple[float, float] | None, disruption: Disruption, expected: bool
) -> None:
    assert in_flight(span, disruption) is expected


A1 = AttemptTimes(1, T0 + 1.0, T0 + 1.1)
A2 = AttemptTimes(2, T0 + 3.0, T0 + 3.1)


@pytest.mark.parametrize(
    ("attempts", "count", "arrived", "extra"),
    [
        ([A1], 1, [T0 + 1.05], []),
        ([A1], 1, [T0 + 1.05, T0 + 12.0], [T0 + 12.0]),  # taken again after a kill
        # a copy of attempt 1 before its outcome is extra, attempt 2 is not
        ([A1, A2], 2, [T0 + 1.05, T0 + 1.08, T0 + 3.05], [T0 + 1.08]),
        # a request after attempt 1's outcome is attempt 2, made before a kill lost its
        # outcome: the copy made again (whose start is recorded) is the extra
        ([A1, A2], 2, [T0 + 1.05, T0 + 2.0, T0 + 3.05], [T0 + 3.05]),
        ([A1, AttemptTimes(2, T0 + 12.0)], 2, [T0 + 1.05, T0 + 2.1, T0 + 12.1], [T0 + 12.1]),
        ([A1, A2], 2, [T0 + 1.05, T0 + 3.05, T0 + 9.0], [T0 + 9.0]),
        # the arrival a little before the attempt's recorded start still belongs to it
        ([A1, A2], 2, [T0 + 0.8, T0 + 2.9], []),
        # the original request's event lost with the killed worker: the copy's start is
        # the attempt's, the earlier request is the attempt, the later one the extra
        ([AttemptTimes(1, T0 + 12.0)], 1, [T0 + 1.0, T0 + 12.1], [T0 + 12.1]),
        ([A2], 2, [T0 + 3.05], []),  # an attempt that never connected: no request
        # an attempt without a start time: only the order is left, the last ones are extra
        ([A1, AttemptTimes(2)], 2, [T0 + 1.05, T0 + 2.0, T0 + 3.05], [T0 + 3.05]),
        ([], 0, [T0 + 1.0, T0 + 2.0], [T0 + 1.0, T0 + 2.0]),
    ],
)
def test_extra_requests(
    attempts: list[AttemptTimes], count: int, arrived: list[float], extra: list[float]
) -> None:
    assert extra_requests(attempts, count, arrived) == extra


@pytest.mark.parametrize(
    ("attempts", "count", "reached", "arrived", "extra"),
    [
        # attempt 1's request recorded by a loaded sandbox after the worker had its outcome:
        # the times give both requests to attempt 2, the counts say one each
        ([A1, A2], 2, 2, [T0 + 1.2, T0 + 3.05], []),
        # three requests for two attempts: one extra whatever the times say
        ([A1, A2], 2, 2, [T0 + 1.2, T0 + 3.05, T0 + 3.06], [T0 + 3.06]),
        # attempt 2 never connected: its request was not made, so a second request before
        # attempt 1's outcome is a copy of attempt 1, as the times say
        ([A1, A2], 2, 1, [T0 + 1.05, T0 + 1.08], [T0 + 1.08]),
        # the times place no extra, the counts need one: the latest request
        ([A1, A2], 1, 1, [T0 + 1.05, T0 + 3.05], [T0 + 3.05]),
    ],
)
def test_the_counts_bound_the_extra_requests_the_times_find(
    attempts: list[AttemptTimes], count: int, reached: int, arrived: list[float], extra: list[float]
) -> None:
    assert extra_requests(attempts, count, arrived, reached) == extra


KILL5, BROKER, KILL20 = kill(5), outage(8, 14), kill(20)
DISRUPTIONS = [KILL5, BROKER, KILL20]
WHOLE = (T0 + 0, T0 + 30)  # in flight at all three


@pytest.mark.parametrize(
    ("lives", "extras", "extra", "notifications", "unexplained"),
    [
        # one extra right after each of two disruptions
        ({"a": WHOLE}, {"a": [T0 + 6, T0 + 21]}, [1, 0, 1], [1, 0, 1], []),
        # two extras after one disruption: the second goes to the free one before it
        ({"a": WHOLE}, {"a": [T0 + 21, T0 + 22]}, [0, 1, 1], [0, 1, 1], []),
        # three extras after the last disruption, three in flight before: all explained
        ({"a": WHOLE}, {"a": [T0 + 21, T0 + 22, T0 + 23]}, [1, 1, 1], [1, 1, 1], []),
        # a fourth is not
        (
            {"a": WHOLE},
            {"a": [T0 + 21, T0 + 22, T0 + 23, T0 + 24]},
            [1, 1, 1],
            [1, 1, 1],
            [("a", T0 + 24)],
        ),
        # two extras after the first kill: one is beyond the bound
        ({"a": WHOLE}, {"a": [T0 + 6, T0 + 7]}, [1, 0, 0], [1, 0, 0], [("a", T0 + 7)]),
        # an extra before any disruption is never explained
        ({"a": WHOLE}, {"a": [T0 + 2]}, [0, 0, 0], [0, 0, 0], [("a", T0 + 2)]),
        # queued after the first kill and done before the second: only the broker stop
        (
            {"b": (T0 + 7, T0 + 16)},
            {"b": [T0 + 15, T0 + 16]},
            [0, 1, 0],
            [0, 1, 0],
            [("b", T0 + 16)],
        ),
        # each notification has its own allowance
        (
            {"a": WHOLE, "b": WHOLE, "c": (T0 + 25, T0 + 26)},
            {"a": [T0 + 21], "b": [T0 + 21], "c": [T0 + 26]},
            [0, 0, 2],
            [0, 0, 2],
            [("c", T0 + 26)],
        ),
        # no row, no life: nothing explains its extras
        ({}, {"x": [T0 + 21]}, [0, 0, 0], [0, 0, 0], [("x", T0 + 21)]),
    ],
)
def test_judge(
    lives: dict[str, tuple[float, float]],
    extras: dict[str, list[float]],
    extra: list[int],
    notifications: list[int],
    unexplained: list[tuple[str, float]],
) -> None:
    outcome = judge(DISRUPTIONS, lives, extras)
    assert outcome.extra == extra
    assert outcome.notifications == notifications
    assert outcome.unexplained == unexplained


def test_in_flight_counts_per_disruption() -> None:
    lives = {"a": WHOLE, "b": (T0 + 7, T0 + 16), "c": (T0 + 25, T0 + 26), "d": None}
    outcome = judge(DISRUPTIONS, lives, {})
    assert outcome.in_flight == [1, 2, 1]
    rows = outcome.rows(DISRUPTIONS)
    assert rows[1] == {
        "kind": "broker stop",
        "what": "",
        "at_s": 8,
        "window_s": 6.0,
        "in_flight": 2,
        "extra_requests": 0,
        "notifications_with_extra": 0,
    }


def test_the_drills_journal_records_the_wall_clock_the_sandbox_is_set_against() -> None:
    import time

    from notifier.chaos.faults import Journal

    printed: list[str] = []
    journal = Journal(printed.append)
    before = time.time()
    journal.note("SIGKILL worker", worker=2, pid=1)
    journal.note("postgres stopped", took_s=0.5)
    journal.note("postgres started", down_s=8.0)
    after = time.time()
    # in time order: the stop began half a second before it was noted, before the kill
    postgres, kill = disruptions_from_journal(journal.entries, drill_end=after)
    assert kill.kind == "kill" and kill.what == "worker 2"
    assert before - 0.001 <= kill.began == kill.ended <= after + 0.001
    assert postgres.kind == "postgres stop"
    assert postgres.began == pytest.approx(journal.entries[1]["epoch"] - 0.5)
    assert postgres.ended == journal.entries[2]["epoch"]
    assert printed[0].endswith("SIGKILL worker (worker=2, pid=1)")


def test_a_worker_found_exited_is_noted_with_the_time_since_it_was_last_seen_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys
    import time

    from notifier.chaos.faults import Journal, Workers

    journal = Journal(lambda line: None)
    workers = Workers(1, {}, tmp_path, journal)
    monkeypatch.setattr(workers, "start", lambda n: None)  # not started again here
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    exited.wait(30)
    workers.procs[0] = exited
    workers.started_at[0] = time.monotonic() - 30  # started long ago
    workers.checked_at = time.monotonic() - 2.0  # last found running 2 s ago
    workers.revive()
    (entry,) = journal.entries
    assert entry["action"] == "worker exited on its own" and entry["code"] == 3
    assert 2.0 <= entry["within_s"] < 10.0
    (exit_,) = disruptions_from_journal(journal.entries, drill_end=time.time())
    assert exit_.ended - exit_.began == pytest.approx(entry["within_s"])
