"""The worker's Kafka transport: Faust's aiokafka transport with its message-loss fixes,
reading read_committed.

Faust picks a transport by the scheme of the broker URL and finds third-party transports
through the `faust.transports` entry point; pyproject.toml registers this one as
`notifier-kafka`, and the app's broker URLs use that scheme (`BROKER_SCHEME`). Every fix is
an override in a subclass, written for the exact faust-streaming and aiokafka releases the
worker refuses to run without (processors/versions.py); tests on a real broker
(tests/integration/test_faust_fixes.py) fail when a fix is taken out.

The dispatcher writes its outputs in Kafka transactions, and a restarted worker's unfinished
transaction is aborted: the worker reads read_committed, or it would act on aborted records
(a command sent twice). Faust builds its consumer read_committed only in its exactly_once
mode, which this project does not use; `ActiveOnlyConsumerThread._create_worker_consumer`
sets it. Transactions leave offsets no record is handed at (markers, aborted records): the
consumer thread records them (`processors.offsets.LogSkips`) so that such a jump counts as
done while a jump over records Faust dropped is still read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka.errors import ConsumerStoppedError, IllegalStateError
from faust.transport.consumer import CONSUMER_FETCHING, CONSUMER_PARTITIONS_REVOKED
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from faust.utils.tracing import traced_from_parent_span
from mode import Service

from processors.offsets import LogSkips, Skip, covered, log_skips, past_skips, skipped

log = logging.getLogger("notifier.transport")

BROKER_SCHEME = "notifier-kafka"


READ_COMMITTED = "read_committed"
YIELD_EVERY = 100  # records handed on between two yields to the event loop, as Faust


def waits_for_committed(
    acked: list[int], committed: int | None, skips: list[Skip] | tuple[()] = ()
) -> bool:
    """Whether a commit must wait: the message at the committed offset (the next one to
    read) is not among the acknowledged ones while later ones are, and the offsets up to
    the first acknowledged one are not all skipped by the log itself (`skips`)."""
    return (
        bool(acked)
        and committed is not None
        and min(acked) > committed
        and not covered(committed, min(acked), skips)
    )


def _positions(fetcher: Any) -> dict[Any, int]:
    """aiokafka's fetch position of each assigned partition that has one (consumer thread)."""
    subscription = fetcher._subscriptions.subscription
    assignment = None if subscription is None else subscription.assignment
    if assignment is None:
        return {}
    found: dict[Any, int] = {}
    for tp in assignment.tps:
        state = assignment.state_value(tp)
        if state is not None and state.has_valid_position:
            found[tp] = state.position
    return found


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

    It also reads read_committed, and records per partition the offsets each fetch passed
    over without handing them to Faust (`log_skips`: the fetch position before and after,
    less the offsets handed; records put back are not handed).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log_skips = LogSkips()

    def _create_worker_consumer(self, transport: Any) -> Any:
        """Faust's worker consumer, reading read_committed (Faust does only in exactly_once).

        The isolation level is read by aiokafka when the consumer starts (its fetcher and
        offset lookups are built then), so setting it on the new consumer is enough; the
        rest of Faust's settings stay Faust's."""
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = READ_COMMITTED
        return consumer

    def highwater(self, tp: TP) -> int:
        """The end of what this consumer can read: the last stable offset (an open
        transaction's records are not readable yet), as Faust does in exactly_once."""
        consumer = self._ensure_consumer()
        stable: int | None = consumer.last_stable_offset(tp)
        if stable is None or stable < 0:
            return int(consumer.highwater(tp))
        return stable

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
            before = _positions(fetcher)
            records: dict[Any, list[Any]] = await fetcher.fetched_records(
                ActivePartitions(active_partitions), timeout=timeout, max_records=max_records
            )
            after = _positions(fetcher)
        # what Faust would drop (as its getmany decides) goes back to be fetched again
        for tp in list(records):
            if faust_consumer.flow_active and (
                tp in faust_consumer._active_partitions or tp in faust_consumer._buffered_partitions
            ):
                continue
            first = records.pop(tp)[0].offset
            after.pop(tp, None)  # not handed: nothing of it is known skipped
            with contextlib.suppress(IllegalStateError):  # revoked: its next owner reads it
                consumer.seek(tp, first)
                log.debug("records of paused %s put back at offset %d", tp, first)
        committed: Any = faust_consumer._committed_offset
        for tp, position in after.items():
            start = before.get(tp)
            if start is None:
                # no position when the fetch began: aiokafka set it meanwhile, to the
                # committed offset (a later one committed elsewhere only widens a skip below
                # what is committed anyway)
                start = committed.get(tp)
            if position != start:
                handed = [record.offset for record in records.get(tp, ())]
                found = log_skips(start, position, handed)
                if found:
                    self.log_skips.add(tp, found)
        return records


class SafeCommitConsumer(driver.Consumer):
    """Faust's aiokafka consumer that commits only what its agents processed.

    Two fixes: a jump in the offsets read over records Faust dropped is not counted as done
    (faust-streaming #606, #378), and the revoke handler commits before the revoked
    partitions' bookkeeping is dropped (faust-streaming #502). Offsets the log itself skips
    (transaction markers, aborted records) are counted as done, also after the last record
    handled, so the committed offset reaches the end of a transactional topic.
    """

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ActiveOnlyConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _log_skips(self, tp: TP) -> list[Skip]:
        """The offsets of `tp` the fetcher passed over without handing them to Faust."""
        thread = getattr(self, "_thread", None)
        found = getattr(thread, "log_skips", None)
        return found.of(tp) if isinstance(found, LogSkips) else []

    def _known_skips(self) -> LogSkips | None:
        found = getattr(getattr(self, "_thread", None), "log_skips", None)
        return found if isinstance(found, LogSkips) else None

    def skipped_by_log(self, tp: TP, first: int, end: int) -> bool:
        """Whether the fetcher passed over every offset in [first, end) of `tp` without
        handing a record (table recovery asks, for a changelog ending in a marker)."""
        known = self._known_skips()
        return known is not None and known.covers(tp, first, end)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust counts a jump in the offsets it reads (from the one before `offset_from`
        to the message at `offset_to`) as a gap left by compaction or transaction markers,
        and so as done. That holds only when the fetcher never handed a record there
        (`processors.offsets.log_skips`): then the offsets skipped, and only those, are
        counted as done (not the message at `offset_to`, still to be handled). Otherwise fetched
        messages were dropped (around a rebalance), and committing past them loses them:
        the partition is marked to be read again from its committed offset
        (`processors.offsets.read_skipped_again`) instead."""
        committed = self._committed_offset.get(tp)
        if committed is not None and offset_to <= committed:
            # committed past already, over skips known then (pruned since): the commit ran
            # ahead of this check, which is not the loss this looks for
            return
        known = self._known_skips()
        if known is not None and known.covers(tp, offset_from, offset_to):
            # Faust's gap runs through `offset_to` itself, the message being read: once
            # handled it is acknowledged as well, its offset is twice in the acknowledged
            # list, and Faust's run of consecutive offsets stops there. Each commit then
            # moved past one transaction of the command topics, and commits fell hundreds
            # of commands behind (make bench). The gap is the skipped offsets only.
            self._add_skipped(tp, offset_from, offset_to - 1, committed)
            return
        log.warning(
            "%s: offsets %d..%d were not read; not counted as done, to be read again",
            tp,
            offset_from,
            offset_to - 1,
        )
        skipped(self).setdefault(tp, time.monotonic())

    def _add_skipped(self, tp: TP, first: int, last: int, committed: int | None) -> None:
        """Faust's `_add_gap` for offsets `first..last`, without rebuilding the tree each time:
        Faust merges overlaps after every insert (`merge_overlaps` rebuilds the whole tree,
        3% of the worker's CPU under make bench with a gap per transaction). The tree holds
        no overlaps before, so it needs merging only when the new range overlaps one (read
        again after a seek back); otherwise the insert alone leaves the same tree. Nothing
        at or before `committed` (the partition's committed offset) is added."""
        if committed is not None:
            first = max(first, committed + 1)
        if first > last:
            return
        gaps = self._gap[tp]
        overlapping = gaps.overlaps(first, last + 1)
        gaps.addi(first, last + 1)  # intervaltree ranges exclude their end
        if overlapping:
            gaps.merge_overlaps()

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's check for a hole at the head of the acknowledged offsets is one short: the
        message at the committed offset itself missing passes (#606). Here nothing is
        committed while the message at the committed offset is not processed, unless the
        log has no record there. The offset committed is moved past what the log skips
        right after it (a trailing commit marker: else lag stays 1 and it is read again)."""
        committed = self._committed_offset[tp]
        known = self._known_skips()
        if known is not None and committed is not None:
            known.prune(tp, committed)  # read again, the fetcher starts at the committed offset
        skips = self._log_skips(tp)
        if waits_for_committed(self._acked[tp], committed, skips):
            return None
        new = super()._new_offset(tp)
        if new is None:
            if self._acked[tp] or committed is None:
                return None
            moved = past_skips(committed, skips)
            return moved if moved > committed else None
        return past_skips(new, skips)

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's drain loop (fetch, check for a jump, hand each message to its streams),
        each message handed on by a plain await. Faust awaits the handler together with
        the flow's suspension and the service's stop, four tasks per record (4% of the
        worker's CPU under `make bench`, py-spy), and cancels the handler when the flow
        stops mid-batch, then counts the message read. The handler does not wait (it puts
        on the streams' queues without waiting and pauses a partition whose queue is full),
        so here it runs to its end and the flow is looked at between messages: `getmany`
        stops at the first record after the flow stopped, before handing it on."""
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records = getmany(timeout=1.0)
                await asyncio.sleep(0)  # a loop of empty fetches still lets others run
                if not self.should_stop:
                    async for tp, message in records:
                        since_yield += 1
                        if since_yield > YIELD_EVERY:
                            await asyncio.sleep(0)
                            since_yield = 0
                        offset = message.offset
                        read = get_read_offset(tp)
                        if read is not None and offset < read:
                            continue  # read before (Faust drops these too)
                        if read and offset - read > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, read + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await callback(message)
                        set_read_offset(tp, offset)
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

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
