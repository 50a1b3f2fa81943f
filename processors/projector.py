"""The NotificationLog projection (and tier escalation with it) in a process of its own:
`notifier projector`, with `NOTIFIER_PROJECTION_ENABLED=false` on the workers.

In a worker the projection shares one event loop with the dispatcher and the channel
agents: folding a batch holds the loop for milliseconds, and each round trip of a dispatcher
transaction waits behind it. In its own process it runs on the other core and the workers'
loops answer sooner (docs/ARCHITECTURE.md, "Processes"). What it writes to Kafka (dead
letters, the escalation outbox) goes through a producer of its own, each record awaited
until the broker has it, as the projection stores its offsets in PostgreSQL right after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from mode import Service, ServiceT

from notifier.contracts.codec import AvroCodec
from notifier.contracts.factory import build_codec
from notifier.settings import Settings
from notifier.topics import full_name
from processors.emitter import dead_letter_record
from processors.partitioner import CachedMurmur2Partitioner
from projections.database import database_url
from projections.escalation import Escalations
from projections.runner import ProjectionRunner


class RecordWriter(Service):
    """The projector's producer: dead letters and published outbox rows, each returned from
    once the broker has it."""

    def __init__(self, settings: Settings, codec: AvroCodec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.codec = codec
        self._producer: AIOKafkaProducer | None = None

    async def on_start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            # keyed as the worker keys them: a record lands on the partition it would
            partitioner=CachedMurmur2Partitioner(),
        )
        await self._producer.start()

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, items: list[tuple[str, bytes | None, bytes]]) -> None:
        """Write encoded records (logical topic, key, value); return once all are stored."""
        assert self._producer is not None, "RecordWriter used before it started"
        delivered = [
            await self._producer.send(full_name(self.settings, topic), value, key=key)
            for topic, key, value in items
        ]
        await asyncio.gather(*delivered)

    async def dead_letter(self, message: Any, stage: str, error: BaseException) -> None:
        """Keep a consumed message that could not be projected, with why."""
        record = dead_letter_record(message, stage, error)
        await self.publish([("deadletter", message.key, self.codec.encode(record))])


class Projector(Service):
    """The writer, then the projection that uses it (started in that order)."""

    def __init__(self, settings: Settings, codec: AvroCodec | None = None, **kwargs: Any) -> None:
        self.codec = codec or build_codec(settings)
        self.writer = RecordWriter(settings, self.codec)
        self.runner = ProjectionRunner(
            settings,
            self.codec,
            database_url(settings),
            self.writer.dead_letter,
            escalations=Escalations(settings, self.codec),
            publish=self.writer.publish,
        )
        super().__init__(**kwargs)

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        return [self.writer, self.runner]

    async def on_stop(self) -> None:
        self.codec.close()


def run_projector(settings: Settings, loglevel: str = "info") -> None:
    """Run the projection process until interrupted (its metrics served when
    `metrics_port` is set)."""
    from mode import Worker

    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    Worker(
        Projector(settings), loglevel=loglevel, quiet=True, redirect_stdouts=False
    ).execute_from_commandline()
