"""What a Faust worker commits, and reading again the messages it skipped.

The worker reads read_committed (processors/kafka_transport.py): the topics the dispatcher
writes in transactions have offsets no record is ever handed at, its commit and abort
markers and the records of aborted transactions. Such a jump "the log itself has" is
recorded here as the fetcher reads (`log_skips`, kept in `LogSkips`) and counted as done;
a jump over records the fetcher did hand to Faust, which Faust then dropped
(faust-streaming #606, #378), is read again (`read_skipped_again`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import faust

log = logging.getLogger("notifier.offsets")

Skip = tuple[int, int]  # offsets [first, end) the log itself skipped

# log skips kept per partition (kept across rebalances: they are facts of the log): enough
# for the markers between two commits, a few seconds apart; the oldest go first
KEEP_SKIPS = 100_000


def log_skips(before: int | None, after: int | None, handed: Sequence[int]) -> list[Skip]:
    """The offsets one fetch of a partition passed over without handing them on: the
    fetcher's position moved from `before` to `after` and it handed `handed` (ascending).

    The fetcher returns a partition's records only from its position on and moves the
    position past whatever it passes (markers, aborted or compacted records), so each
    offset in [before, after) not handed is one the log has no record to hand at.
    """
    if before is None or after is None or after <= before:
        return []
    found: list[Skip] = []
    start = before
    for offset in handed:
        if offset < start:  # read again after a seek back while the fetch waited
            continue
        if offset >= after:
            break
        if offset > start:
            found.append((start, offset))
        start = offset + 1
    if start < after:
        found.append((start, after))
    return found


def covered(first: int, end: int, skips: Iterable[Skip]) -> bool:
    """Whether every offset in [first, end) lies in one of `skips` (an empty range does)."""
    for low, high in sorted(skips):
        if first >= end:
            break
        if low <= first < high:
            first = high
    return first >= end


def past_skips(offset: int, skips: Iterable[Skip]) -> int:
    """The first offset from `offset` on that the log did not skip."""
    for low, high in sorted(skips):
        if low <= offset < high:
            offset = high
    return offset


class LogSkips:
    """Per partition, the log skips the consumer thread's fetches met; read by the Faust
    consumer on the worker's event loop, so every access holds a lock.

    Kept until the committed offset passes them (`prune`): the fetcher runs ahead of the
    agents, and with a backlog thousands of transactions' markers are fetched before Faust
    checks the first of them; a skip forgotten before its check is read again, and again
    (a bound of 256 per partition did that under the failure drill). `keep` per partition
    bounds memory should commits stop (~100 bytes a skip)."""

    def __init__(self, keep: int = KEEP_SKIPS) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._by_tp: dict[Any, dict[int, int]] = {}

    def add(self, tp: Any, skips: Iterable[Skip]) -> None:
        """Record `skips` of `tp` (the same skip met again, after a seek back, once)."""
        with self._lock:
            known = self._by_tp.setdefault(tp, {})
            for low, high in skips:
                if known.get(low, low) < high:
                    known[low] = high
            while len(known) > self._keep:
                del known[next(iter(known))]  # the oldest met

    def of(self, tp: Any) -> list[Skip]:
        """The recorded skips of `tp`, in offset order."""
        with self._lock:
            return sorted(self._by_tp.get(tp, {}).items())

    def covers(self, tp: Any, first: int, end: int) -> bool:
        """Whether the log skipped every offset of `tp` in [first, end): skips chained from
        `first` (how a jump after a handed record meets them), else any that cover it."""
        with self._lock:
            known = self._by_tp.get(tp, {})
            at = first
            while at < end:
                high = known.get(at)
                if high is None:
                    break
                at = high
            if at >= end:
                return True
            return covered(first, end, list(known.items()))

    def prune(self, tp: Any, below: int) -> None:
        """Forget the skips of `tp` that end at or below `below` (committed past them)."""
        with self._lock:
            known = self._by_tp.get(tp)
            if known:
                for low in [low for low, high in known.items() if high <= below]:
                    del known[low]


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset Faust's consumer last committed for `tp` (all before it handled or
    skipped by the log: see `SafeCommitConsumer`); None when it committed none."""
    offset: int | None = consumer._committed_offset.get(tp)
    return offset


def skipped_by_log(consumer: Any, tp: Any, first: int, end: int) -> bool:
    """Whether the consumer's fetches passed over every offset in [first, end) of `tp`
    without a record to hand (False for a consumer that does not record it)."""
    check = getattr(consumer, "skipped_by_log", None)
    return bool(check(tp, first, end)) if check is not None else False


def resume_offset(consumer: Any, tp: Any) -> int | None:
    """Where Faust's consumer resumes `tp`: its committed offset, else the one after the
    last it read (nothing committed by this worker yet); None when it knows neither."""
    offset = committed_offset(consumer, tp)
    if offset is None:
        last: int | None = consumer._read_offset.get(tp)
        offset = None if last is None else last + 1
    return offset


def skipped(consumer: Any) -> dict[Any, float]:
    """Partitions where the consumer saw offsets jump, with when it first saw it."""
    found: dict[Any, float] | None = getattr(consumer, "_notifier_skipped", None)
    if found is None:
        found = {}
        consumer._notifier_skipped = found
    return found


async def read_skipped_again(app: faust.App, after_s: float = 2.0) -> bool:
    """Rewind to the committed offsets when messages were skipped `after_s` ago or more;
    True when it did. Without this the skipped messages would wait for the next rebalance.

    Flow is stopped first and the fetcher let finish, as Faust does before it seeks, so no
    message read from the old position lands after the rewind; then every partition goes
    back to its committed offset (never past a skipped message: see `SafeCommitConsumer` in
    processors/kafka_transport.py), and what follows it is read again (at-least-once).
    """
    consumer: Any = app.consumer
    seen = skipped(consumer)
    if not seen or time.monotonic() - min(seen.values()) < after_s or not consumer.flow_active:
        return False
    tps = sorted(str(tp) for tp in seen)
    marks = dict(seen)
    seen.clear()
    consumer.stop_flow()
    try:
        await asyncio.wait_for(consumer.wait_for_stopped_flow(), 10)
        await consumer.perform_seek()
    except Exception as exc:  # a broker away or a rebalance: tried again at the next tick
        for tp, since in marks.items():
            seen.setdefault(tp, since)
        log.warning("reading %s again failed (%r); trying again", tps, exc)
        return False
    finally:
        consumer.resume_flow()
    log.warning("read again from the committed offsets after skipped messages in %s", tps)
    return True
