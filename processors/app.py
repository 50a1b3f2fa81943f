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
from notifier.domain.dispatch import Dispatch, IncidentMemory
from notifier.domain.throttle import parse_throttles
from notifier.settings import Settings
from notifier.topics import channel_topic, full_name
from processors.batch_handling import handle_until_done
from processors.batches import arrived_batches
from processors.channels import ChannelSender
from processors.closed_incidents import ClosedIncidents
from processors.directory import UserDirectory
from processors.dispatch_transactions import PartitionProducers, TransactionalDispatcher
from processors.dispatcher import plan, utcnow
from processors.emitter import Emitter
from processors.endpoint import WorkerEndpoint
from processors.incident_memories import IncidentMemories, memory_topic
from processors.kafka_transport import BROKER_SCHEME, require_fixed_transport
from processors.offsets import committed_offset, read_skipped_again, skipped_by_log
from processors.partitioner import CachedMurmur2Partitioner
from processors.quiet_monitor import QuietMonitor
from processors.recorded_results import RecordedResults
from processors.retry import RetryScheduler
from processors.stalls import StallWatch, read_stalled_again
from processors.table_recovery import SeekFirstTableManager
from processors.throttle import TABLE as THROTTLE_TABLE
from processors.throttle import throttle
from processors.versions import require_tested_versions

log = logging.getLogger("notifier.app")


class StopsWith(Service):
    """Runs `stop` when the worker stops."""

    def __init__(self, stop: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stop = stop

    async def on_stop(self) -> None:
        await self._stop()


class ProviderConnections(Service):
    """Closes the providers' HTTP connections when the worker stops."""

    def __init__(self, providers: list[Provider], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.providers = providers

    async def on_stop(self) -> None:
        for provider in self.providers:
            await provider.close()


def create_app(
    settings: Settings,
    *,
    codec: AvroCodec | None = None,
    providers: dict[Channel, list[Provider]] | None = None,
) -> faust.App:
    """The Faust app with the dispatcher and one agent per channel (`providers`: each
    channel's providers in failover order; built from the settings when not given)."""
    # the transport's and the table manager's fixes are written for these releases only
    require_tested_versions()
    codec = codec or build_codec(settings)
    require_fixed_transport()
    brokers = [f"{BROKER_SCHEME}://{host}" for host in settings.kafka_bootstrap.split(",")]
    app = faust.App(
        f"{settings.topic_prefix}notifier",
        broker=brokers,
        store="memory://",
        monitor=QuietMonitor(),
        TableManager=SeekFirstTableManager,
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
        # about 1 in 3 without); the cause was the fetch bug that ActiveOnlyConsumerThread
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
    # the dispatcher's incident memories: written in its transactions, not a Faust table
    memories = IncidentMemories(settings)
    if settings.projection_enabled:
        from projections.database import database_url
        from projections.escalation import Escalations
        from projections.runner import ProjectionRunner

        async def dead_letter(msg: Any, stage: str, error: BaseException) -> None:
            # wait: the projection stores its offsets in PostgreSQL right after
            await emitter.dead_letter_message(msg, stage, error, wait=True)

        async def publish(items: list[tuple[str, bytes | None, bytes]]) -> None:
            # queued one by one, awaited together; deleted from the outbox after
            delivered = [await emitter.send_raw(topic, key, value) for topic, key, value in items]
            await asyncio.gather(*delivered)

        # the projection also takes the escalation decisions, in its transactions
        runner = ProjectionRunner(
            settings,
            codec,
            database_url(settings),
            dead_letter,
            escalations=Escalations(settings, codec),
            publish=publish,
        )
        app.add_dependency(endpoint.lag_of("projection", runner))

    # every worker follows the incident table's changelog: "closed" is read the same for an
    # incident of any partition, and at once after a restart
    closed = ClosedIncidents(settings, memories.topic)
    app.add_dependency(closed)

    def incident_status(incident_id: str) -> str:
        here = memories.get(incident_id)  # the partitions this worker owns: the freshest
        return IncidentMemory.status_of(here) if here is not None else closed.status(incident_id)

    app.add_dependency(endpoint.lag_of("retry", RetryScheduler(settings, emitter, closed)))
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
    # keyed user|channel, updated only by the throttle agent, whose input is keyed by user
    throttles = app.Table(THROTTLE_TABLE, default=None, partitions=settings.topic_partitions)
    windows = parse_throttles(settings.throttles)

    async def each_event(
        stream: Any,
        handle: Callable[[Record], Awaitable[None]],
        what: str,
    ) -> None:
        # one event at a time: Faust tables write their changelog to the partition of the
        # current event, which a batch would get wrong. Every failure is routed, never raised.
        async for event in stream.events():
            await handle_event(event, handle, what)
            # acknowledged now, not when the stream asks for the next event: a rebalance
            # right after this one would otherwise hand it to the next owner again
            event.ack()

    async def handle_event(
        event: Any,
        handle: Callable[[Record], Awaitable[None]],
        what: str,
    ) -> None:
        try:
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

    def decide(record: Record, memory: IncidentMemory) -> tuple[Dispatch, IncidentMemory]:
        return plan(record, memory, directory, utcnow(), settings)

    dispatch_topics = {full_name(settings, name) for name in ("incidents", "dispatch.commands")}
    transactional = TransactionalDispatcher(
        settings,
        codec,
        memories,
        PartitionProducers(settings, app.conf.id),
        decide,
        windows.keys(),
        owns=lambda tp: tp in app.consumer.assignment(),
        skipped_by_log=lambda tp, first, end: skipped_by_log(app.consumer, tp, first, end),
        committed=lambda tp: committed_offset(app.consumer, tp),
    )
    app.add_dependency(StopsWith(transactional.stop))

    # per channel agent: outcomes recorded by anyone, read once per partition and assignment
    recorded = {
        full_name(settings, channel_topic(channel)): RecordedResults(
            settings, codec, channel, sender.finished
        )
        for channel, sender in senders.items()
    }

    for reader in recorded.values():
        app.add_dependency(StopsWith(reader.stop))

    @app.on_partitions_assigned.connect
    async def take_over_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned: set[Any] = args[0]
        partitions = {tp.partition for tp in assigned if tp.topic in dispatch_topics}
        transactional.assigned(sorted(partitions))

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0]
        for tp in revoked:
            if tp.topic in recorded:
                recorded[tp.topic].forget([tp.partition])
        # after Faust waited for the events in flight: no transaction of these is open
        await transactional.revoked({tp.partition for tp in revoked if tp.topic in dispatch_topics})

    @app.agent(dispatch_input, name="dispatcher")
    async def dispatcher(stream: Any) -> None:
        await directory.ready.wait()
        # acknowledged by the transactional dispatcher, each once its transaction committed
        batches = arrived_batches(stream.noack().events(), settings.batch_size)
        async with contextlib.aclosing(batches):
            async for events in batches:
                await transactional.handle(events)

    async def throttle_one(record: Record) -> None:
        await emitter.send_many(throttle(record, throttles, windows, utcnow()))

    @app.agent(emitter.topic("notify.throttle"), name="throttle")
    async def throttle_agent(stream: Any) -> None:
        await each_event(stream, throttle_one, "throttle")

    async def skipped_messages() -> None:
        await read_skipped_again(app)

    app.timer(1.0)(skipped_messages)  # each second: a skip is read again within ~3 s

    stalls = StallWatch()

    async def stalled_partitions() -> None:
        read_stalled_again(app.consumer, stalls)

    app.timer(5.0)(stalled_partitions)

    async def dead_letter_handled(event: Any, error: BaseException) -> None:
        await emitter.dead_letter(event, "handle", error)

    for channel, sender in senders.items():
        results = recorded[full_name(settings, channel_topic(channel))]

        async def deliver(
            stream: Any, sender: ChannelSender = sender, results: RecordedResults = results
        ) -> None:
            # acknowledged by hand, each once its batch is handled: a crash mid-batch
            # leaves them to be read again
            batches = arrived_batches(stream.noack().events(), settings.batch_size)
            # closed with the agent, so its reader stops taking events nobody will handle
            async with contextlib.aclosing(batches):
                async for events in batches:
                    await results.before(events)
                    await handle_until_done(events, sender.handle, dead_letter_handled)
                    for event in events:
                        event.ack()

        app.agent(emitter.topic(channel_topic(channel)), name=f"send-{channel.value.lower()}")(
            deliver
        )

    return app


def declare_changelogs(app: faust.App, settings: Settings, timeout_s: float = 30.0) -> None:
    """Create the tables' changelog topics (and the incident memories' topic) that do not
    exist yet, before the worker starts.

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
    # the incident memories' topic is kept as a table's changelog is
    wanted = {memory_topic(settings): settings.topic_partitions} | {
        table.changelog_topic.get_topic_name(): table.partitions or settings.topic_partitions
        for table in app.tables.values()
    }
    missing = [
        NewTopic(name, partitions, replication, config=config)
        for name, partitions in wanted.items()
        if name not in existing
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
