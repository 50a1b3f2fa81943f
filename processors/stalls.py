"""Partitions that stopped moving: messages past the committed offset that no agent is
handling, and nothing that would show the hole.

Faust drops fetched records in places (a fetch cut short when its flow stops, a stream that
skips an event of another generation); `SafeCommitConsumer` notices such a hole when a later
record arrives with a jump in offsets (processors/kafka_transport.py). Two holes show no
jump. One at the end of what was written has no later record. One at the committed offset
itself, after a rewind (`read_skipped_again`) or a rebalance: Faust's read offset is then
set to the committed offset, the next one to read, so the message there counts as read
already; when it is lost, the later ones arrive without a jump, are handled, and the commit
waits for it for good (a drill stalled so: 121 notifications queued and never sent, the
partition's acknowledged offsets piling up behind its committed one). Either way the
partition's committed offset stays put while its agent is idle.

The check here needs no jump: a partition behind its end, none of whose messages is being
handled, and whose committed offset has not moved for 30 s is read again from its committed
offset. A partition only slow to
handle has messages in flight and is left alone; one whose messages wait behind another
partition's long batch may be read again, which costs a re-read: copies of commands already
handled are dropped by the channel agents.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processors.metrics import STALLED_PARTITIONS
from processors.offsets import resume_offset, skipped

log = logging.getLogger("notifier.stalls")

# long against a commit interval (~3 s) and a batch of slow provider calls (10 s timeouts):
# under a burst, messages wait untracked in Faust's stream buffers behind other partitions'
# (a 3 s rule for "later messages done" read partitions again in the middle of make bench)
STALL_AFTER_S = 30.0


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """One partition as the consumer holds it at one moment."""

    committed: int | None  # where the group resumes: the next offset to handle
    end: int | None  # the readable end (last stable offset), None while unknown
    in_flight: int  # messages handed to agents and not acknowledged yet


class StallWatch:
    """Remembers since when each partition's committed offset has not moved."""

    def __init__(self, after_s: float = STALL_AFTER_S) -> None:
        self.after_s = after_s
        self._since: dict[Any, tuple[int, float]] = {}

    def stalled(self, progress: Mapping[Any, PartitionProgress], now: float) -> list[Any]:
        """The partitions stalled at `now`: behind their end, nothing in flight, and their
        committed offset unchanged for `after_s`. A partition reported stalled starts
        counting again (it is read again; reported again if that did not help)."""
        found = []
        for tp, p in progress.items():
            if p.committed is None or p.end is None or p.committed >= p.end or p.in_flight:
                self._since.pop(tp, None)
                continue
            offset, since = self._since.get(tp, (p.committed, now))
            if offset != p.committed:
                since = now
            if now - since >= self.after_s:
                found.append(tp)
                since = now
            self._since[tp] = (p.committed, since)
        for tp in set(self._since) - set(progress):  # no longer assigned
            del self._since[tp]
        return found


def faust_progress(consumer: Any) -> dict[Any, PartitionProgress]:
    """What Faust's consumer holds of each assigned stream partition (not the tables'
    changelogs, which recovery reads). Its committed offset when it has one, else the one
    after the last it read; in flight: its tracked messages not acknowledged yet."""
    in_flight: dict[Any, int] = {}
    for message in list(consumer._unacked_messages):
        in_flight[message.tp] = in_flight.get(message.tp, 0) + 1
    changelogs = {t.changelog_topic.get_topic_name() for t in consumer.app.tables.values()}
    found: dict[Any, PartitionProgress] = {}
    for tp in consumer.assignment():
        if tp.topic in changelogs:
            continue
        found[tp] = PartitionProgress(
            resume_offset(consumer, tp), _end(consumer, tp), in_flight.get(tp, 0)
        )
    return found


def _end(consumer: Any, tp: Any) -> int | None:
    """The partition's readable end; None while the fetcher has not learnt it (Faust's
    `highwater` then raises: the check must never take the worker down)."""
    try:
        end = consumer.highwater(tp)
    except (TypeError, ValueError, KeyError, AssertionError):
        return None
    return end if isinstance(end, int) and end >= 0 else None


def read_stalled_again(consumer: Any, watch: StallWatch, now: float | None = None) -> list[Any]:
    """Mark the stalled partitions to be read again from their committed offsets (by
    `processors.offsets.read_skipped_again`, at once); returns them. A consumer that cannot
    be read now (starting, rebalancing) is checked next time: this never raises."""
    now = time.monotonic() if now is None else now
    try:
        progress = faust_progress(consumer)
    except Exception as exc:  # the check is a safety net: it must not take the worker down
        log.debug("stall check skipped: %r", exc)
        return []
    found = watch.stalled(progress, now)
    marks = skipped(consumer)
    for tp in found:
        STALLED_PARTITIONS.labels(tp.topic).inc()
        log.warning(
            "%s[%s] stalled: nothing handled while behind its end; read again",
            tp.topic,
            tp.partition,
        )
        marks.setdefault(tp, now - watch.after_s)  # read again at the next check, not later
    return found
