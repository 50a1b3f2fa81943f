"""Publishing from the bridge: records are acknowledged by Kafka before the provider gets
its 2xx, so a callback is either on the topic or retried by the provider, never lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

from notifier.contracts.codec import AvroCodec
from notifier.contracts.records import Record
from notifier.kafka_io import producer_config
from notifier.settings import Settings
from notifier.topics import full_name

log = logging.getLogger("notifier.bridge.publisher")


class PublishFailedError(RuntimeError):
    """Kafka did not acknowledge a record in time."""


class AsyncPublisher:
    """confluent-kafka's producer, its delivery reports turned into awaitable futures."""

    def __init__(self, settings: Settings, codec: AvroCodec, timeout_s: float = 10.0) -> None:
        from confluent_kafka import Producer

        self.settings = settings
        self.codec = codec
        self.timeout_s = timeout_s
        self._producer = Producer(
            producer_config(
                settings, **{"linger.ms": 2, "message.timeout.ms": int(timeout_s * 1000)}
            )
        )
        self._stop = threading.Event()
        # delivery reports are served by poll(): a thread keeps polling so no request waits
        self._poller = threading.Thread(target=self._poll, name="bridge-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def publish(self, items: Sequence[tuple[str, str, Record]]) -> None:
        """Produce (logical topic, key, record) items; return once all are acknowledged."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for topic, key, record in items:
            future: asyncio.Future[None] = loop.create_future()

            def report(err: Any, msg: Any, future: asyncio.Future[None] = future) -> None:
                loop.call_soon_threadsafe(_settle, future, err)

            self._producer.produce(
                full_name(self.settings, topic),
                key=key.encode(),
                value=self.codec.encode(record),
                on_delivery=report,
            )
            futures.append(future)
        try:
            await asyncio.wait_for(asyncio.gather(*futures), self.timeout_s + 1)
        except TimeoutError as exc:
            raise PublishFailedError(f"Kafka did not acknowledge in {self.timeout_s:g} s") from exc

    def close(self) -> None:
        """Flush what is queued and stop the polling thread."""
        self._stop.set()
        self._poller.join(timeout=2)
        with contextlib.suppress(Exception):
            self._producer.flush(5)


def _settle(future: asyncio.Future[None], err: Any) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(PublishFailedError(str(err)))
