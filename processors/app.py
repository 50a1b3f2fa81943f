"""The one place the Faust app and its agents are built and wired to their dependencies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from mode import Service

from adapters.base import Provider
from adapters.providers import build_channel_providers
from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.contracts.factory import build_codec
from notifier.contracts.records import Channel, Record
from notifier.domain.dispatch import IncidentMemory
from notifier.domain.throttle import parse_throttles
from notifier.settings import Settings
from notifier.topics import channel_topic, full_name
from processors.batch_handling import handle_until_done
from processors.batches import arrived_batches
from processors.channels import ChannelSender
from processors.directory import UserDirectory
from processors.dispatcher import log_dispatch, outgoing, plan, utcnow
from processors.emitter import Emitter
from processors.endpoint import WorkerEndpoint
from processors.escalation import escalate, may_change_decisions
from processors.offsets import never_commit_past_unprocessed, read_skipped_again
from processors.partitioner import CachedMurmur2Partitioner
from processors.patching import patchable
from processors.retry import RetryScheduler
from processors.throttle import TABLE as THROTTLE_TABLE
from processors.throttle import throttle
from processors.versions import require_tested_versions

log = logging.getLogger("notifier.app")


class ProviderConnections(Service):
    """Closes the providers' HTTP connections when the worker stops."""

    def __init__(self, providers: list[Provider], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.providers = providers

    async def on_stop(self) -> None:
        for provider in self.providers:
            await provider.close()


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


def fetch_only_active_partitions() -> None:
    """Stop Faust's fetcher from consuming records of partitions Faust has paused.

    Faust (faust-streaming 0.15, aiokafka driver) hands aiokafka its own live set of active
    partitions, and aiokafka's `fetched_records` reads an empty set as "every assigned
    partition". Faust empties that set while a fetch may be waiting (up to 1 s): on revoke,
    on assignment, and between the end of table recovery and the resume of the stream
    partitions. The fetch then returns records of paused partitions (changelogs, topics),
    Faust drops them, and aiokafka's position has already moved past them. Faust's re-seek
    moves only partitions with a committed offset, so a changelog partition stays past the
    records its recovery waits for (the worker keeps its partitions and consumes nothing
    until the next rebalance: "No event received for active tp ... since recovery start"),
    and a topic partition with nothing committed yet skips messages, which the next commit
    then passes for good.

    Here each fetch asks for Faust's active partitions through a view that follows the live
    set but is never "empty" to aiokafka (an empty set then means nothing, not everything),
    and whatever comes back for a partition that is no longer active is put back (seek to
    its first record) for when it is resumed. The view must stay live: a copy taken when the
    fetch starts misses partitions Faust makes active while it waits, and those waited out
    the 1 s fetch timeout (p50 incident -> provider request 2.3 s at 50 incidents/s, 41 ms
    live; make bench). Replaces `AIOKafkaConsumerThread._fetch_records` of the versions it
    was written against; any other version is left alone, with a warning.
    """
    from aiokafka.errors import ConsumerStoppedError, IllegalStateError
    from faust.transport.drivers import aiokafka as driver

    thread: Any = driver.AIOKafkaConsumerThread
    if not patchable(thread, "_fetch_only_active", "fetch"):
        return
    fetch_all = thread._fetch_records

    async def fetch(
        self: Any,
        consumer: Any,
        active_partitions: set[Any] | None,
        timeout: float | None = None,  # noqa: ASYNC109 (the name Faust calls it with)
        max_records: int | None = None,
    ) -> Any:
        faust_consumer = self.consumer
        if active_partitions is None:  # a client-only app: every partition is wanted
            return await fetch_all(self, consumer, None, timeout, max_records)
        if not faust_consumer.flow_active or not active_partitions:
            return {}
        partitions = ActivePartitions(active_partitions)
        fetcher = consumer._fetcher
        if consumer._closed or fetcher._closed:
            raise ConsumerStoppedError()
        with fetcher._subscriptions.fetch_context():
            records: dict[Any, list[Any]] = await fetcher.fetched_records(
                partitions, timeout=timeout, max_records=max_records
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

    thread._fetch_records = fetch
    thread._fetch_only_active = True


def commit_before_forgetting_revoked() -> None:
    """Commit what the streams acknowledged on the revoked partitions before Faust forgets it.

    Faust (faust-streaming 0.15, `Consumer.on_partitions_revoked`) drops its bookkeeping of
    the revoked partitions (acknowledged offsets, gaps, last committed offset) first and only
    then calls the app's handler, which waits for the events in flight and commits: that
    commit finds nothing acknowledged and commits nothing (faust #502). With the default
    eager assignment every partition is revoked at every rebalance, so whatever was handled
    since the last periodic commit (`broker_commit_interval`, 2.8 s; the first one only 5.6 s
    after the worker starts, so nothing at all in a short first generation) was handled again
    by the partition's next owner: a provider request sent again for each of them.

    Here the handler runs first, with the bookkeeping intact, and the revoked partitions are
    forgotten after it has committed. Replaces `Consumer.on_partitions_revoked` of the
    versions it was written against; any other version is left alone, with a warning.
    """
    from faust.transport import consumer as base
    from faust.utils.tracing import traced_from_parent_span

    cls: Any = base.Consumer
    if not patchable(cls, "_commit_before_forgetting", "revoke commit"):
        return

    @Service.transitions_to(base.CONSUMER_PARTITIONS_REVOKED)
    async def on_partitions_revoked(self: Any, revoked: set[Any]) -> None:
        span = self.app._start_span_from_rebalancing("on_partitions_revoked")
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

    cls.on_partitions_revoked = on_partitions_revoked
    cls._commit_before_forgetting = True


def seek_streams_before_resuming() -> None:
    """Seek the stream partitions to their committed offsets before resuming them, not after.

    Faust (faust-streaming 0.15, `Recovery.on_recovery_completed`) resumes the stream
    partitions and only then seeks them to their committed offsets. When no table needed
    recovering the flow is already active, so the fetcher reads the resumed partitions at
    once; what the agents handle before the seek lands is read again after it (the seek
    also resets Faust's read offsets) and handled a second time by the same worker: a
    provider request sent twice. Here the partitions are seeked while still paused, then
    resumed. Replaces `Recovery.on_recovery_completed` of the versions it was written
    against; any other version is left alone, with a warning.
    """
    from faust.tables.recovery import Recovery

    cls: Any = Recovery
    if not patchable(cls, "_seeks_before_resuming", "resume seek"):
        return

    async def on_recovery_completed(self: Any, generation_id: int = 0) -> None:
        app = self.app
        consumer = app.consumer
        self.log.info("Restore complete!")
        await app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(
                    self.actives_for_table[table], self.standbys_for_table[table]
                )
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        assignment = consumer.assignment()
        if app.consumer_generation_id != generation_id:
            self.log.warning(
                "Recovery rebalancing again app id %s param %s",
                app.consumer_generation_id,
                generation_id,
            )
            return
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        self.completed.set()
        app.flow_control.resume()
        consumer.resume_flow()
        await app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")

    cls.on_recovery_completed = on_recovery_completed
    cls._seeks_before_resuming = True


def create_app(
    settings: Settings,
    *,
    codec: AvroCodec | None = None,
    providers: dict[Channel, list[Provider]] | None = None,
) -> faust.App:
    """The Faust app with the dispatcher and one agent per channel (`providers`: each
    channel's providers in failover order; built from the settings when not given)."""
    require_tested_versions()  # the fixes below are for these releases only
    codec = codec or build_codec(settings)
    fetch_only_active_partitions()
    commit_before_forgetting_revoked()
    seek_streams_before_resuming()
    never_commit_past_unprocessed()
    brokers = [f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")]
    app = faust.App(
        f"{settings.topic_prefix}notifier",
        broker=brokers,
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        datadir=str(settings.stack_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor or 1,
        producer_acks=-1,
        # a few ms to fill a batch: one produce request for what a handful of events emit,
        # rather than one each (fewer syscalls here and less work for the brokers)
        producer_linger=settings.producer_linger_ms / 1000,
        producer_partitioner=CachedMurmur2Partitioner(),
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 10,
        consumer_auto_offset_reset="earliest",
        # no standby table replicas: a new owner rebuilds its tables from the changelog. They
        # were turned off while a scale test with 2-3 workers stalled (6 of 9 runs with them,
        # about 1 in 3 without); the cause was the fetch bug that fetch_only_active_partitions
        # works around, and standbys have not been measured again since
        table_standby_replicas=0,
        # no agent concurrency > 1: it can commit past in-flight messages (faust #606)
    )
    emitter = Emitter(app, settings, codec)
    directory = UserDirectory(settings, codec)
    endpoint = WorkerEndpoint(settings, app, directory)  # /metrics, /healthz, /readyz, lag
    if settings.metrics_port:
        app.add_dependency(endpoint)  # first: it answers while the others start
    app.add_dependency(directory)  # started and stopped with the app
    # JSON values (the app's default serializer): internal state, not a published contract
    memories = app.Table("incident-memory", default=None, partitions=settings.topic_partitions)
    if settings.projection_enabled:
        from projections.database import database_url
        from projections.runner import ProjectionRunner

        async def dead_letter(msg: Any, stage: str, error: BaseException) -> None:
            await emitter.dead_letter_message(
                msg.topic,
                msg.partition,
                msg.offset,
                msg.key,
                msg.value,
                msg.headers,
                stage,
                error,
                wait=True,  # the projection stores its offsets in PostgreSQL right after
            )

        runner = ProjectionRunner(settings, codec, database_url(settings), dead_letter)
        app.add_dependency(endpoint.lag_of("projection", runner))

    def incident_status(incident_id: str) -> str:
        return IncidentMemory.status_of(memories.get(incident_id))

    app.add_dependency(endpoint.lag_of("retry", RetryScheduler(settings, emitter)))
    providers = providers or build_channel_providers(settings)
    app.add_dependency(ProviderConnections([p for ps in providers.values() for p in ps]))
    senders = {
        channel: ChannelSender(channel, ps, settings, emitter, incident_status)
        for channel, ps in providers.items()
    }

    def raw_input(*logical: str) -> Any:
        # several topics feeding one agent, bytes in: the agents decode with the codec
        return app.topic(
            *(full_name(settings, name) for name in logical),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            internal=False,
        )

    dispatch_input = raw_input("incidents", "dispatch.commands")
    tier_states = app.Table("tier-state", default=None, partitions=settings.topic_partitions)
    # keyed user|channel, updated only by the throttle agent, whose input is keyed by user
    throttles = app.Table(THROTTLE_TABLE, default=None, partitions=settings.topic_partitions)
    windows = parse_throttles(settings.throttles)

    async def each_event(
        stream: Any,
        handle: Callable[[Record], Awaitable[None]],
        what: str,
        wanted: Callable[[str], bool] | None = None,
    ) -> None:
        # one event at a time: Faust tables write their changelog to the partition of the
        # current event, which a batch would get wrong. Every failure is routed, never raised.
        # `wanted` (of a record name) lets an agent pass types by without decoding them.
        async for event in stream.events():
            await handle_event(event, handle, what, wanted)
            # acknowledged now, not when the stream asks for the next event: a rebalance
            # right after this one would otherwise hand it to the next owner again
            event.ack()

    async def handle_event(
        event: Any,
        handle: Callable[[Record], Awaitable[None]],
        what: str,
        wanted: Callable[[str], bool] | None,
    ) -> None:
        try:
            if wanted is not None and not wanted(codec.record_name(event.value)):
                return
            record = codec.decode(event.value)
        except ContractError as exc:
            await emitter.dead_letter(event, "decode", exc)
            return
        try:
            await handle(record)
        except Exception as exc:
            log.exception(
                "%s failed", what, extra={"incident_id": getattr(record, "incident_id", None)}
            )
            await emitter.dead_letter(event, "handle", exc)

    async def escalate_one(record: Record) -> None:
        await emitter.send_many(escalate(record, tier_states, incident_status, settings))

    async def dispatch_one(record: Record) -> None:
        incident_id = getattr(record, "incident_id", "")
        memory = IncidentMemory.from_json(memories.get(incident_id))
        dispatched, memory = plan(record, memory, directory, utcnow(), settings)
        memories[incident_id] = memory.to_json()
        await emitter.send_many(outgoing(dispatched, throttled=windows.keys()))
        log_dispatch(record, dispatched)

    escalation_input = raw_input("delivery.events", "provider.callbacks")

    @app.agent(escalation_input, name="escalation")
    async def escalation(stream: Any) -> None:
        await each_event(stream, escalate_one, "escalation", may_change_decisions)

    @app.agent(dispatch_input, name="dispatcher")
    async def dispatcher(stream: Any) -> None:
        await directory.ready.wait()
        await each_event(stream, dispatch_one, "dispatch")

    async def throttle_one(record: Record) -> None:
        await emitter.send_many(throttle(record, throttles, windows, utcnow()))

    @app.agent(emitter.topic("notify.throttle"), name="throttle")
    async def throttle_agent(stream: Any) -> None:
        await each_event(stream, throttle_one, "throttle")

    async def skipped_messages() -> None:
        await read_skipped_again(app)

    app.timer(1.0)(skipped_messages)  # each second: a skip is read again within ~3 s

    async def dead_letter_handled(event: Any, error: BaseException) -> None:
        await emitter.dead_letter(event, "handle", error)

    for channel, sender in senders.items():

        async def deliver(stream: Any, sender: ChannelSender = sender) -> None:
            # acknowledged by hand, each once its batch is handled: a crash mid-batch
            # leaves them to be read again
            batches = arrived_batches(stream.noack().events(), settings.batch_size)
            # closed with the agent, so its reader stops taking events nobody will handle
            async with contextlib.aclosing(batches):
                async for events in batches:
                    await handle_until_done(events, sender.handle, dead_letter_handled)
                    for event in events:
                        event.ack()

        app.agent(emitter.topic(channel_topic(channel)), name=f"send-{channel.value.lower()}")(
            deliver
        )

    return app


def declare_changelogs(app: faust.App, settings: Settings, timeout_s: float = 30.0) -> None:
    """Create the tables' changelog topics that do not exist yet, before the worker starts.

    Faust subscribes to a table's changelog before it creates it; a table written to before
    the consumer's next metadata refresh then finds it with 0 partitions (PartitionsMismatch)
    and every event of its agent is dead-lettered. Created here, as Faust would (compacted).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    metadata = admin.list_topics(timeout=timeout_s)
    existing = metadata.topics
    # replicated as the declared topics are (min(3, brokers) unless set): a table's state
    # must not live on one broker's disk
    replication = settings.replication_factor or min(3, len(metadata.brokers))
    config = {"cleanup.policy": "compact"}
    if replication >= 3:
        config["min.insync.replicas"] = "2"
    missing = [
        NewTopic(
            table.changelog_topic.get_topic_name(),
            table.partitions or settings.topic_partitions,
            replication,
            config=config,
        )
        for table in app.tables.values()
        if table.changelog_topic.get_topic_name() not in existing
    ]
    if not missing:
        return
    for name, fut in admin.create_topics(missing, request_timeout=timeout_s).items():
        try:
            fut.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        log.info("created changelog topic %s", name)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the Faust worker with every agent until interrupted."""
    from faust.worker import Worker

    app = create_app(settings)
    declare_changelogs(app, settings)
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # Faust's start-up spinner sets the root logger to DEBUG so that it can spin on every
    # record, and leaves it there: every debug call in aiokafka then builds a LogRecord
    # (5% of the worker's CPU under load, py-spy)
    worker.spinner = None
    worker.execute_from_commandline()
