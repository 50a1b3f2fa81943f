"""Provider-side duplicates judged per disruption: which disruptions each extra request is
put down to, which notifications were in flight at each disruption, and which extra requests
no disruption explains. Pure: times are epoch seconds (the sandbox's clock and the workers'
are the one host clock).

Disruptions come from the drill's journal, each with a window [began, ended]:
- "SIGKILL worker": an instant, the kill;
- "worker exited on its own": from the last time the drill had found it running (the note's
  `within_s` before it: it may have exited any time since) to the moment it was found;
- "broker stopped" .. "broker started", "postgres stopped" .. "postgres started": the
  outage, from the moment the stop began (the note's time minus `took_s`) to the start (the
  end of the drill when no start was noted).

A notification's life is [queued, done]:
- queued: notification_log.queued_at (the first time it was queued; a copy queued again
  does not move it);
- done: the latest time its attempts record in notification_attempt: an outcome
  (finished_at), a request made again (last_requested_at, moved by every copy of an attempt
  that was sent again) or a start (started_at, for an attempt with no outcome yet); when
  no attempt has a time, the end of the last request the sandbox received for it.
It is *in flight* at a disruption when its life and the disruption's window overlap:
queued <= ended and began < done. (notification_log.updated_at is not used: it is the
projection's write time, which a PostgreSQL outage pushes back.)

Which requests are extra: each request the sandbox received for a notification goes to the
latest attempt that could have been made by the time it arrived: once the attempt before it
had its outcome (notification_attempt.finished_at), or else once it had started (started_at,
allowing SKEW_S); requests before that go to the first attempt. An attempt's recorded start
is that of the copy whose outcome was recorded: when a kill loses the first copy's outcome,
the copy made again after the restart is the one recorded, and the first copy's request,
made earlier, is still the attempt's. The first request of each attempt is the attempt; the
others are extra. When an attempt has no start time the order is all there is:
the last `requests - attempt_count` requests are the extra ones.

The counts bound what the times say. Every attempt that reached the provider made at least
one request and one recorded attempt made at most one that is not extra, so a notification
has between `requests - attempt_count` and `requests - reached` extra requests (`reached`:
its attempts less those that failed before connecting). The times are the worker's and the
sandbox's, each taken when its process got to it: on a loaded host a request can be recorded
after the worker had its outcome, and fall to the next attempt. So when the times find more
extras than the counts allow, the latest ones are kept, and when fewer, the latest requests
not yet counted are added.

Which disruption explains an extra request: at most one extra request of a notification per
disruption at which it was in flight. The extras are taken in time order and each goes to
the latest disruption that began before it (began <= the request's arrival), at which the
notification was in flight and that explains no other extra of it; the first choice is the
last disruption before the request. An extra with no such disruption is unexplained: the
drill fails on it. (Taking them in time order with the latest free disruption finds an
explanation for every extra whenever any assignment would: each extra may use any in-flight
disruption before it, and those sets only grow with time.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SKEW_S = 0.5  # an attempt's start is taken just before its request leaves the worker

# journal actions that are disruptions, and the action that ends each outage
INSTANTS = ("SIGKILL worker", "worker exited on its own")
OUTAGES = {"broker stopped": "broker started", "postgres stopped": "postgres started"}
KINDS = {
    "SIGKILL worker": "kill",
    "worker exited on its own": "worker exit",
    "broker stopped": "broker stop",
    "postgres stopped": "postgres stop",
}


@dataclass(frozen=True)
class Disruption:
    """One disruption of the drill: its kind, its window (epoch s), its drill time and what
    it hit (the worker, the broker node)."""

    kind: str
    began: float
    ended: float
    at_s: float  # seconds since the drill started, as the journal prints it
    what: str = ""

    @property
    def label(self) -> str:
        """How the table names it: kind, drill time and target."""
        return f"{self.kind}{' ' + self.what if self.what else ''} @ {self.at_s:.1f} s"


@dataclass(frozen=True)
class AttemptTimes:
    """The times notification_attempt holds for one attempt (epoch s, None when unset)."""

    attempt: int
    started: float | None = None
    finished: float | None = None
    last_requested: float | None = None


@dataclass(frozen=True)
class Outcome:
    """The judgement: per disruption (in the order of `disruptions`) the notifications in
    flight, the extra requests put down to it and the notifications they were for; the
    extra requests no disruption explains (notification id, time)."""

    in_flight: list[int]
    extra: list[int]
    notifications: list[int]
    unexplained: list[tuple[str, float]]

    def rows(self, disruptions: Sequence[Disruption]) -> list[dict[str, Any]]:
        """The per-disruption table as JSON-able rows (kept in the drill's summary)."""
        return [
            {
                "kind": d.kind,
                "what": d.what,
                "at_s": d.at_s,
                "window_s": round(d.ended - d.began, 1),
                "in_flight": self.in_flight[i],
                "extra_requests": self.extra[i],
                "notifications_with_extra": self.notifications[i],
            }
            for i, d in enumerate(disruptions)
        ]


def disruptions_from_journal(
    entries: Iterable[Mapping[str, Any]], drill_end: float
) -> list[Disruption]:
    """The disruptions of a journal (entries with `action`, `at_s`, `epoch` and details), in
    time order; an outage with no start noted lasts until `drill_end`."""
    entries = [e for e in entries if "epoch" in e]
    out: list[Disruption] = []
    for i, e in enumerate(entries):
        action = str(e["action"])
        if action in INSTANTS:
            at, since = float(e["epoch"]), float(e.get("within_s", 0.0))
            what = f"worker {e['worker']}" if "worker" in e else ""
            at_s = round(float(e["at_s"]) - since, 1)
            out.append(Disruption(KINDS[action], at - since, at, at_s, what))
        elif action in OUTAGES:
            took = float(e.get("took_s", 0.0))
            began = float(e["epoch"]) - took
            ended = next(
                (
                    float(later["epoch"])
                    for later in entries[i + 1 :]
                    if later["action"] == OUTAGES[action] and later.get("node") == e.get("node")
                ),
                drill_end,
            )
            what = f"node {e['node']}" if "node" in e else ""
            at_s = round(float(e["at_s"]) - took, 1)
            out.append(Disruption(KINDS[action], began, max(began, ended), at_s, what))
    return sorted(out, key=lambda d: d.began)


def life(
    queued: float | None, attempts: Iterable[AttemptTimes], request_ends: Iterable[float]
) -> tuple[float, float] | None:
    """[queued, done] of one notification (see the module docstring); None when it was
    never queued or nothing says when it was done."""
    if queued is None:
        return None
    times = [
        t for a in attempts for t in (a.started, a.finished, a.last_requested) if t is not None
    ]
    if not times:
        times = list(request_ends)
    if not times:
        return None
    return queued, max(times)


def in_flight(span: tuple[float, float] | None, d: Disruption) -> bool:
    """Whether a notification with life `span` was in flight at `d`."""
    return span is not None and span[0] <= d.ended and d.began < span[1]


def extra_requests(
    attempts: Sequence[AttemptTimes],
    attempt_count: int,
    requests: Iterable[float],
    reached: int | None = None,
) -> list[float]:
    """The arrival times of a notification's extra requests (see the module docstring);
    `reached`: its attempts that connected to the provider (all of them when None)."""
    arrived = sorted(requests)
    fewest = max(0, len(arrived) - attempt_count)
    most = max(0, len(arrived) - (attempt_count if reached is None else reached))
    by_times = _extra_by_times(attempts, attempt_count, arrived)
    if len(by_times) > most:
        return by_times[len(by_times) - most :]
    if len(by_times) < fewest:
        rest = sorted((Counter(arrived) - Counter(by_times)).elements())
        return sorted(by_times + rest[len(rest) - (fewest - len(by_times)) :])
    return by_times


def _extra_by_times(
    attempts: Sequence[AttemptTimes], attempt_count: int, arrived: list[float]
) -> list[float]:
    """The extra requests as the times place them (`arrived` sorted)."""
    starts = sorted((a.started, a.attempt) for a in attempts if a.started is not None)
    if len(starts) < len(attempts) or not starts:
        return arrived[attempt_count:] if len(arrived) > attempt_count else []
    finished = {a.attempt: a.finished for a in attempts}
    opens = [
        (min(started - SKEW_S, finished.get(attempt - 1) or started), attempt)
        for started, attempt in starts
    ]
    seen: set[int] = set()
    extra: list[float] = []
    for t in arrived:
        owner = opens[0][1]
        for opened, attempt in opens:
            if opened <= t:
                owner = attempt
        if owner in seen:
            extra.append(t)
        seen.add(owner)
    return extra


def judge(
    disruptions: Sequence[Disruption],
    lives: Mapping[str, tuple[float, float] | None],
    extras: Mapping[str, Sequence[float]],
) -> Outcome:
    """Count in-flight notifications per disruption and put each extra request down to a
    disruption (see the module docstring); `lives` holds every notification judged."""
    in_flight_at = [sum(in_flight(s, d) for s in lives.values()) for d in disruptions]
    extra = [0] * len(disruptions)
    notified: list[set[str]] = [set() for _ in disruptions]
    unexplained: list[tuple[str, float]] = []
    for nid, times in sorted(extras.items()):
        span = lives.get(nid)
        used: set[int] = set()
        for t in sorted(times):
            free = [
                i
                for i, d in enumerate(disruptions)
                if d.began <= t and i not in used and in_flight(span, d)
            ]
            if not free:
                unexplained.append((nid, t))
                continue
            chosen = max(free, key=lambda i: (disruptions[i].began, i))
            used.add(chosen)
            extra[chosen] += 1
            notified[chosen].add(nid)
    return Outcome(in_flight_at, extra, [len(n) for n in notified], unexplained)
