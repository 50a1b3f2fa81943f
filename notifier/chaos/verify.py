"""The drill's verdict: pure checks over what was expected, what the NotificationLog holds,
what the provider sandbox received and what was dead-lettered.

- lost: an expected notification with no row, or a row not in a terminal status
  (SENT, DELIVERED, FAILED, CANCELLED; a notification that failed after its retries is
  terminal and fine);
- duplicate rows: two rows for one (incident, level, user, channel, kind, repeat), or rows
  of the drill's incidents that no incident asked for;
- attempts: each row's `notification_attempt` rows are exactly 1..attempt_count, and the
  sandbox received at least attempt_count requests for the notification;
- provider-side duplicates: requests beyond attempt_count (a command taken again after a
  worker died before committing it: at-least-once). Counted and reported, in all and per
  disruption (SIGKILL, broker stop, PostgreSQL stop, a worker that exited): at most ONE extra
  request per notification per disruption at which it was in flight (the rules, what "in
  flight" is and which disruption an extra request is put down to, are in
  `notifier.chaos.inflight`), and at most `batch_size` x channels per disruption in all;
- dead letters: every injected garbage message, and nothing else.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from notifier.chaos import inflight
from notifier.chaos.inflight import AttemptTimes, Disruption
from notifier.chaos.plan import Expected

TERMINAL = frozenset({"SENT", "DELIVERED", "FAILED", "CANCELLED"})
SAMPLE = 10  # ids listed per failed check in the JSON
# attempt errors of requests that never reached the provider (adapters/base.py spells them)
NOT_CONNECTED = re.compile(r"no answer in time \(Connect|: Connect\w*: |circuit open")


def never_connected(error: str | None) -> bool:
    """Whether an attempt's error says no connection to the provider was made."""
    return bool(error and NOT_CONNECTED.search(error))


@dataclass(frozen=True)
class Row:
    """The part of a notification_log row the drill checks."""

    notification_id: str
    incident_id: str
    user_id: str
    channel: str
    status: str
    attempt_count: int
    escalation_level: int | None = None
    kind: str | None = None
    repeat: int = 0
    queued_at: float | None = None  # epoch s


@dataclass(frozen=True)
class DeadLetterSeen:
    """One dead letter of the drill: the original's key and place."""

    key: str
    source_topic: str
    source_partition: int
    source_offset: int
    stage: str
    reason: str


@dataclass(frozen=True)
class Check:
    """One line of the verdict."""

    name: str
    value: str
    ok: bool
    note: str = ""


@dataclass
class Verdict:
    """Every check, the figures behind them, and samples of what failed."""

    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    def add(self, name: str, value: object, ok: bool, note: str = "") -> None:
        """Add one check."""
        self.checks.append(Check(name, str(value), ok, note))

    def as_json(self) -> dict[str, Any]:
        """A JSON-able form for chaos-results/."""
        return {
            "ok": self.ok,
            "checks": [c.__dict__ for c in self.checks],
            "figures": self.figures,
            "samples": self.samples,
        }


def verify(
    expected: Mapping[str, Expected],
    rows: Iterable[Row],
    attempts: Mapping[str, list[int]],
    unreached: Mapping[str, int],
    requests: Iterable[Mapping[str, Any]],
    dead_letters: Iterable[DeadLetterSeen],
    garbage_keys: set[str],
    disruptions: Sequence[Disruption],
    per_disruption_bound: int,
    timings: Mapping[str, Sequence[AttemptTimes]] | None = None,
) -> Verdict:
    """Check the drill's outcome; `attempts` holds each notification's attempt numbers in
    notification_attempt, `unreached` how many of them failed without a connection to the
    provider, `requests` the sandbox's recorded requests of the drill (with `started_at` and
    `finished_at`, epoch s), `timings` each notification's attempt times."""
    v = Verdict()
    timings = timings or {}
    rows = list(rows)
    by_id = {r.notification_id: r for r in rows}

    missing = sorted(set(expected) - set(by_id))
    not_terminal = sorted(
        nid for nid in expected if nid in by_id and by_id[nid].status not in TERMINAL
    )
    v.add("expected notifications", len(expected), bool(expected))
    v.add("rows in NotificationLog", len(rows), True)
    v.add("lost: no row", len(missing), not missing)
    v.add("lost: not in a terminal status", len(not_terminal), not not_terminal)
    v.samples["no_row"] = missing[:SAMPLE]
    v.samples["not_terminal"] = [f"{n} {by_id[n].status}" for n in not_terminal[:SAMPLE]]

    logical = Counter(
        (r.incident_id, r.escalation_level, r.user_id, r.channel, r.kind, r.repeat) for r in rows
    )
    doubled = [k for k, n in logical.items() if n > 1]
    unexpected = sorted(nid for nid in by_id if nid not in expected)
    v.add("duplicate rows", len(doubled), not doubled)
    v.add("rows nobody asked for", len(unexpected), not unexpected)
    v.samples["duplicate_rows"] = ["|".join(map(str, k)) for k in doubled[:SAMPLE]]
    v.samples["unexpected_rows"] = unexpected[:SAMPLE]

    statuses = Counter(r.status for r in rows if r.notification_id in expected)
    v.figures["statuses"] = dict(sorted(statuses.items()))

    gaps = sorted(
        r.notification_id
        for r in rows
        if sorted(attempts.get(r.notification_id, [])) != list(range(1, r.attempt_count + 1))
    )
    v.add("attempt rows not 1..attempt_count", len(gaps), not gaps)
    v.samples["attempt_gaps"] = gaps[:SAMPLE]

    received: Counter[str] = Counter()
    arrivals: dict[str, list[float]] = {}  # request start times per notification
    ends: dict[str, list[float]] = {}
    unattributed: Counter[str] = Counter()
    earlier: Counter[str] = Counter()  # backlog of an earlier run on the stack, sent now
    run = next(iter(expected.values())).incident_id.split("-inc-")[0] if expected else ""
    for req in requests:
        nid = req.get("notification_id")
        incident = str(req.get("incident_id") or "")
        if incident.startswith("chaos") and not incident.startswith(f"{run}-"):
            earlier[incident.split("-inc-")[0]] += 1
        elif nid:
            received[str(nid)] += 1
            arrivals.setdefault(str(nid), []).append(float(req.get("started_at") or 0.0))
            ends.setdefault(str(nid), []).append(float(req.get("finished_at") or 0.0))
        else:
            unattributed[str(req.get("provider"))] += 1
    short: list[str] = []
    never_reached = 0
    extra: dict[str, int] = {}
    for r in rows:
        if r.notification_id not in expected:
            continue
        got = received.get(r.notification_id, 0)
        # an attempt that timed out connecting never reached the provider: it is recorded,
        # failed and retried, and explains one request fewer
        reached = r.attempt_count - unreached.get(r.notification_id, 0)
        never_reached += r.attempt_count - reached
        if got < reached:
            short.append(f"{r.notification_id} attempts={r.attempt_count} requests={got}")
        elif got > r.attempt_count:
            extra[r.notification_id] = got - r.attempt_count
    strays = sorted(nid for nid in received if nid not in expected)
    v.add(
        "attempts the provider never saw",
        len(short),
        not short,
        f"{never_reached} attempts failed before connecting" if never_reached else "",
    )
    v.add("requests for unknown notifications", len(strays), not strays)
    v.samples["attempts_without_request"] = short[:SAMPLE]
    v.samples["requests_for_unknown"] = strays[:SAMPLE]

    dup_by_channel: Counter[str] = Counter()
    for nid, n in extra.items():
        dup_by_channel[expected[nid].channel.value] += n
    total_extra = sum(extra.values())
    worst = max(extra.values(), default=0)
    count = len(disruptions)
    total_bound = max(1, count) * per_disruption_bound
    v.add(
        "provider-side duplicate sends",
        f"{total_extra} extra requests on {len(extra)} notifications",
        total_extra <= total_bound,
        f"bound {total_bound} ({count} disruptions x {per_disruption_bound})",
    )
    judged = [r for r in rows if r.notification_id in expected]
    lives = {
        r.notification_id: inflight.life(
            r.queued_at, timings.get(r.notification_id, ()), ends.get(r.notification_id, ())
        )
        for r in judged
    }
    extra_at = {
        r.notification_id: times
        for r in judged
        if (
            times := inflight.extra_requests(
                timings.get(r.notification_id, ()),
                r.attempt_count,
                arrivals.get(r.notification_id, ()),
                r.attempt_count - unreached.get(r.notification_id, 0),
            )
        )
    }
    outcome = inflight.judge(disruptions, lives, extra_at)
    unexplained = Counter(nid for nid, _ in outcome.unexplained)
    # a disruption can make work that was not committed be done again: one redo of each
    # notification that was in flight, not more
    v.add(
        "extra requests beyond one per disruption in flight",
        f"{len(outcome.unexplained)} on {len(unexplained)} notifications",
        not outcome.unexplained,
        f"{sum(outcome.extra)} extra requests put down to {count} disruptions",
    )
    v.samples["unexplained_extra_requests"] = [
        f"{nid} +{n} ({len(extra_at[nid])} extra, in flight at "
        f"{sum(inflight.in_flight(lives[nid], d) for d in disruptions)} disruptions)"
        for nid, n in unexplained.most_common(SAMPLE)
    ]
    v.samples["duplicate_sends"] = [
        f"{nid} +{n}" for nid, n in sorted(extra.items(), key=lambda kv: -kv[1])[:SAMPLE]
    ]
    v.figures |= {
        "sandbox_requests": sum(received.values()) + sum(unattributed.values()),
        "requests_without_notification_id": dict(sorted(unattributed.items())),
        "requests_for_earlier_runs": dict(sorted(earlier.items())),
        "attempts_recorded": sum(r.attempt_count for r in rows if r.notification_id in expected),
        "duplicate_sends": total_extra,
        "notifications_sent_twice_or_more": len(extra),
        "duplicate_sends_by_channel": dict(sorted(dup_by_channel.items())),
        "most_extra_requests_for_one_notification": worst,
        "extra_requests_per_disruption": outcome.rows(disruptions),
        "extra_requests_unexplained": len(outcome.unexplained),
    }

    seen = list(dead_letters)
    garbage = [d for d in seen if d.key in garbage_keys]
    other = [d for d in seen if d.key not in garbage_keys]
    places = Counter((d.source_topic, d.source_partition, d.source_offset) for d in garbage)
    caught = {d.key for d in garbage}
    not_caught = sorted(garbage_keys - caught)
    v.add(
        "injected garbage dead-lettered",
        f"{len(caught)} of {len(garbage_keys)}",
        not not_caught,
        f"{sum(n - 1 for n in places.values())} dead-lettered again after a restart"
        if any(n > 1 for n in places.values())
        else "",
    )
    v.add("other dead letters", len(other), not other)
    v.samples["garbage_not_dead_lettered"] = not_caught[:SAMPLE]
    v.samples["other_dead_letters"] = [
        f"{d.source_topic}[{d.source_partition}]@{d.source_offset} {d.stage}: {d.reason[:120]}"
        for d in other[:SAMPLE]
    ]
    v.samples = {k: s for k, s in v.samples.items() if s}
    return v
