"""The worker's Kafka transport: Faust's aiokafka transport with three message-loss fixes.

Faust picks a transport by the scheme of the broker URL and finds third-party transports
through the `faust.transports` entry point; pyproject.toml registers this one as
`notifier-kafka`, and the app's broker URLs use that scheme (`BROKER_SCHEME`). Every fix is
an override in a subclass, written for the exact faust-streaming and aiokafka releases the
worker refuses to run without (processors/versions.py); tests on a real broker
(tests/integration/pipeline/test_faust_fixes.py) fail when a fix is taken out.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from aiokafka.errors import ConsumerStoppedError, IllegalStateError
from faust.transport.consumer import CONSUMER_PARTITIONS_REVOKED
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from faust.utils.tracing import traced_from_parent_span
from mode import Service

from processors.offsets import skipped

log = logging.getLogger("notifier.transport")

BROKER_SCHEME = "notifier-kafka"


def waits_for_committed(acked: list[int], committed: int | None) -> bool:
    """Whether a commit must wait: the message at the committed offset (the next one to
    read) is not among the acknowledged ones while later ones are."""
    return bool(acked) and committed is not None and min(acked) > committed


class ActivePartitions:
    """Faust's live set of active partitions as aiokafka's fetcher reads it: membership
    follows the set as Faust changes it, and it is never falsy (aiokafka reads a falsy
    partition set as "every assigned partition")."""

    def __init__(self, live: set[Any]) -> None:
        self.live = live

    def __contains__(self, tp: object) -> bool:
        return tp in self.live

    def __bool__(self) -> bool:
        return True


class ActiveOnlyConsumerThread(driver.AIOKafkaConsumerThread):
    """Fetches records only of the partitions Faust has active (faust-streaming #629, #155).

    Faust hands aiokafka its own live set of active partitions, and aiokafka's
    `fetched_records` reads an empty set as "every assigned partition". Faust empties that
    set while a fetch may be waiting (up to 1 s): on revoke, on assignment, and between the
    end of table recovery and the resume of the stream partitions. The fetch then returns
    records of paused partitions, Faust drops them, and aiokafka's position has already
    moved past them: a changelog partition then never reaches the offset its recovery waits
    for ("No event received for active tp ... since recovery start", the worker consumes
    nothing until the next rebalance), and a topic partition with nothing committed yet
    skips messages, which the next commit then passes for good.

    Here each fetch asks for Faust's active partitions through a view that follows the live
    set but is never "empty" to aiokafka, and whatever comes back for a partition that is no
    longer active is put back (seek to its first record) for when it is resumed. The view
    must stay live: a copy taken when the fetch starts misses partitions Faust makes active
    while it waits, and those wait out the 1 s fetch timeout.
    """

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: set[Any] | None,
        timeout: float | None = None,  # noqa: ASYNC109 (the name Faust calls it with)
        max_records: int | None = None,
    ) -> Any:
        faust_consumer: Any = self.consumer
        if active_partitions is None:  # a client-only app: every partition is wanted
            return await super()._fetch_records(consumer, None, timeout, max_records)  # type: ignore[arg-type]
        if not faust_consumer.flow_active or not active_partitions:
            return {}
        fetcher = consumer._fetcher
        if consumer._closed or fetcher._closed:
            raise ConsumerStoppedError()
        with fetcher._subscriptions.fetch_context():
            records: dict[Any, list[Any]] = await fetcher.fetched_records(
                ActivePartitions(active_partitions), timeout=timeout, max_records=max_records
            )
        # what Faust would drop (as its getmany decides) goes back to be fetched again
        for tp in list(records):
            if faust_consumer.flow_active and (
                tp in faust_consumer._active_partitions or tp in faust_consumer._buffered_partitions
            ):
                continue
            first = records.pop(tp)[0].offset
            with contextlib.suppress(IllegalStateError):  # revoked: its next owner reads it
                consumer.seek(tp, first)
                log.debug("records of paused %s put back at offset %d", tp, first)
        return records


class SafeCommitConsumer(driver.Consumer):
    """Faust's aiokafka consumer that commits only what its agents processed.

    Two fixes: a jump in the offsets read is not counted as done (faust-streaming #606, #378),
    and the revoke handler commits before the revoked partitions' bookkeeping is dropped
    (faust-streaming #502).
    """

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ActiveOnlyConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust counts a jump in the offsets it reads as a gap left by compaction or
        transaction markers, and so as done. Our agents read only plain topics, where offsets
        have no gaps: a jump means fetched messages were dropped (around a rebalance), and
        committing past them loses them. Here the partition is marked to be read again from
        its committed offset (`processors.offsets.read_skipped_again`) instead."""
        log.warning(
            "%s: offsets %d..%d were not read; not counted as done, to be read again",
            tp,
            offset_from,
            offset_to - 1,
        )
        skipped(self).setdefault(tp, time.monotonic())

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's check for a hole at the head of the acknowledged offsets is one short: the
        message at the committed offset itself missing passes (#606). Here nothing is
        committed while the message at the committed offset is not processed."""
        if waits_for_committed(self._acked[tp], self._committed_offset[tp]):
            return None
        return super()._new_offset(tp)

    @Service.transitions_to(CONSUMER_PARTITIONS_REVOKED)
    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Faust drops the revoked partitions' acknowledged offsets first and only then runs
        the app's handler, which waits for the events in flight and commits: that commit
        finds nothing and commits nothing (#502), so whatever was handled since the last
        periodic commit was handled again by the partition's next owner. Here the handler
        runs first, with the bookkeeping intact, and the partitions are forgotten after."""
        app: Any = self.app
        span = app._start_span_from_rebalancing("on_partitions_revoked")
        traced = traced_from_parent_span(span)
        with span:
            if self._active_partitions is not None:
                self._active_partitions.difference_update(revoked)
            self._paused_partitions.difference_update(revoked)
            try:
                # waits for the events in flight, then commits what was acknowledged
                await traced(self._on_partitions_revoked, partitions=revoked)(revoked)
            finally:
                for tp in revoked:
                    self._gap.pop(tp, None)
                    self._acked.pop(tp, None)
                    self._acked_index.pop(tp, None)
                    self._read_offset.pop(tp, None)
                    self._committed_offset.pop(tp, None)


class Transport(driver.Transport):
    """Faust's aiokafka transport with `SafeCommitConsumer` (entry point `notifier-kafka`)."""

    Consumer = SafeCommitConsumer


def require_fixed_transport() -> None:
    """Refuse to build the app when Faust would not find this transport by its scheme
    (the package's entry points are missing: it was not installed, e.g. run from a copy)."""
    from faust.transport import by_url

    found: object
    try:
        found = by_url(f"{BROKER_SCHEME}://localhost")
    except (ImportError, ValueError, KeyError) as exc:
        found = exc
    if found is not Transport:
        raise RuntimeError(
            f"Faust does not resolve the {BROKER_SCHEME}:// transport to "
            f"{__name__}.Transport (got {found!r}): install the notifier package "
            "(pip install -e .) so its faust.transports entry point is registered"
        )
