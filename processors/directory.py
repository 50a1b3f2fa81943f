"""The users directory: every UserProfile of the compacted users topic, in memory.

Incidents are keyed by incident, users by user, so no partition holds both: every worker
reads all of `users`. (A Faust GlobalTable with `users` as its changelog was tried first; on
faust-streaming 0.15.3 it stalled in partition assignment. See docs/ARCHITECTURE.md.)
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.contracts.records import UserProfile
from notifier.domain.quiet_hours import check as check_quiet_hours
from notifier.settings import Settings
from notifier.topics import full_name

log = logging.getLogger("notifier.directory")


CACHE_SIZE = 10_000  # decoded profiles kept; the rest stay as their Avro bytes


class UserDirectory(Service):
    """Reads `users` from the beginning and keeps following it; `ready` once caught up.

    Profiles are kept as the Avro bytes they arrived in (a few hundred bytes each, where a
    decoded profile costs kilobytes of Python objects) and decoded when asked for, the most
    recent `CACHE_SIZE` kept decoded: 100k users fit in tens of MB.
    """

    def __init__(self, settings: Settings, codec: AvroCodec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.codec = codec
        self._encoded: dict[str, bytes] = {}
        self._decoded: OrderedDict[str, UserProfile] = OrderedDict()
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._end: dict[TopicPartition, int] = {}
        self._seen: dict[TopicPartition, int] = {}

    def get(self, user_id: str) -> UserProfile | None:
        """The latest profile of `user_id`, or None."""
        profile = self._decoded.get(user_id)
        if profile is not None:
            self._decoded.move_to_end(user_id)
            return profile
        value = self._encoded.get(user_id)
        if value is None:
            return None
        decoded = self.codec.decode(value)  # decoded once already when it arrived
        assert isinstance(decoded, UserProfile)
        self._decoded[user_id] = decoded
        if len(self._decoded) > CACHE_SIZE:
            self._decoded.popitem(last=False)
        return decoded

    def __len__(self) -> int:
        return len(self._encoded)

    async def on_start(self) -> None:
        topic = full_name(self.settings, "users")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        partitions = await asyncio.to_thread(self._partitions, topic)
        await consumer.start()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        self._end = await consumer.end_offsets(assigned)
        self._consumer = consumer
        self._maybe_ready()

    def _partitions(self, topic: str) -> list[int]:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
        found = admin.list_topics(topic, timeout=30).topics.get(topic)
        if found is None or found.error is not None:
            raise RuntimeError(f"topic {topic} does not exist: run `notifier topics create`")
        return list(found.partitions)

    def _maybe_ready(self) -> None:
        if not self.ready.is_set() and all(
            self._seen.get(tp, 0) >= end for tp, end in self._end.items()
        ):
            log.info("users directory ready: %d profiles", len(self._encoded))
            self.ready.set()

    @Service.task
    async def _follow(self) -> None:
        while not self.should_stop:
            if self._consumer is None:
                await asyncio.sleep(0.05)
                continue
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batches.items():
                for msg in messages:
                    self._apply(msg.key, msg.value)
                    self._seen[tp] = msg.offset + 1
            self._maybe_ready()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        user_id = (key or b"").decode(errors="replace")
        if value is None:  # tombstone: the user was deleted
            self._encoded.pop(user_id, None)
            self._decoded.pop(user_id, None)
            return
        try:
            profile = self.codec.decode(value)
        except ContractError as exc:
            log.warning("users: skipped an undecodable profile for %s: %s", user_id, exc.reason)
            return
        if isinstance(profile, UserProfile):
            problem = check_quiet_hours(profile)
            if problem is not None:
                # kept: the rest of the profile is good; its alerts go out at once
                log.warning("users: quiet hours of %s ignored: %s", user_id, problem)
            self._encoded[profile.user_id] = value
            self._decoded.pop(profile.user_id, None)

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
