"""The worker's metrics endpoint with a fake Faust app, directory and consumers: probes,
readiness reasons, and lag sampled per partition."""

from __future__ import annotations

import asyncio
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from notifier.settings import Settings
from processors.directory import UserDirectory
from processors.endpoint import WorkerEndpoint, faust_offsets, lag, readable_end


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FakeFaustConsumer:
    """What the endpoint reads of Faust's consumer."""

    assigned: set[TopicPartition] = field(default_factory=set)
    highwaters: dict[TopicPartition, int] = field(default_factory=dict)
    _committed_offset: dict[TopicPartition, int | None] = field(
        default_factory=lambda: defaultdict(lambda: None)
    )
    _read_offset: dict[TopicPartition, int | None] = field(
        default_factory=lambda: defaultdict(lambda: None)
    )
    started: bool = True

    def assignment(self) -> set[TopicPartition]:
        if not self.started:
            raise RuntimeError("consumer not started")
        return set(self.assigned)

    def highwater(self, tp: TopicPartition) -> int:
        return self.highwaters[tp]


class FakeAiokafka:
    """What the endpoint reads of an aiokafka consumer."""

    def __init__(
        self,
        positions: dict[TopicPartition, tuple[int | None, int]],
        stable: dict[TopicPartition, int] | None = None,
    ) -> None:
        self.positions = positions
        self.stable = stable or {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.positions[tp][0]

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.stable.get(tp)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp][1]


def endpoint(consumer: FakeFaustConsumer, port: int = 0) -> tuple[WorkerEndpoint, Any]:
    directory = SimpleNamespace(ready=asyncio.Event())
    app = SimpleNamespace(consumer=consumer)
    settings = Settings(metrics_port=port)
    return WorkerEndpoint(settings, app, cast(UserDirectory, directory)), directory


def lag_value(consumer: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "notifier_consumer_lag_messages",
        {"consumer": consumer, "topic": topic, "partition": str(partition)},
    )


def test_lag_is_unknown_until_both_ends_are_known() -> None:
    assert lag(None, 3) is None
    assert lag(10, None) is None
    assert lag(10, 4) == 6
    assert lag(4, 10) == 0  # a position past a stale highwater is not negative lag


@pytest.mark.parametrize(
    ("highwater", "last_stable", "end"),
    [
        (10, 10, 10),  # nothing open: both the same
        (12, 10, 10),  # a transaction open at 10: not readable yet, not lag
        (10, -1, 10),  # read_uncommitted: aiokafka says -1
        (10, None, 10),  # no stable offset from the broker
        (None, None, None),  # before the first fetch
    ],
)
def test_lag_is_measured_to_what_can_be_read(
    highwater: int | None, last_stable: int | None, end: int | None
) -> None:
    assert readable_end(highwater, last_stable) == end


def test_faust_offsets_use_committed_then_read_and_skip_changelogs() -> None:
    committed, read, changelog = (TopicPartition(t, 0) for t in ("a", "b", "c-changelog"))
    consumer = FakeFaustConsumer(
        assigned={committed, read, changelog},
        highwaters={committed: 10, read: 7, changelog: 99},
    )
    consumer._committed_offset[committed] = 4
    consumer._read_offset[read] = 5  # the last message read: the next is 6
    assert faust_offsets(consumer) == {("a", 0): (10, 4), ("b", 0): (7, 6)}


def test_readiness_says_what_it_waits_for() -> None:
    consumer = FakeFaustConsumer(started=False)
    worker, directory = endpoint(consumer)
    assert worker.readiness() == "users directory still catching up"
    directory.ready.set()
    assert "not started" in (worker.readiness() or "")
    consumer.started = True
    assert "no partitions assigned" in (worker.readiness() or "")
    consumer.assigned.add(TopicPartition("incidents", 0))
    assert worker.readiness() is None


async def test_lag_is_sampled_per_consumer_and_partition_and_dropped_when_revoked() -> None:
    tp = TopicPartition("lagtest.incidents", 2)
    consumer = FakeFaustConsumer(assigned={tp}, highwaters={tp: 12})
    consumer._committed_offset[tp] = 5
    worker, _ = endpoint(consumer)
    projection = TopicPartition("lagtest.delivery.events", 1)
    worker.lag_of("projection", SimpleNamespace(_consumer=FakeAiokafka({projection: (40, 38)})))
    # a transaction's marker ends the topic: the position (past it) is the end, lag 0
    ended = TopicPartition("lagtest.notify.repeats", 0)
    worker.lag_of("repeats", SimpleNamespace(_consumer=FakeAiokafka({ended: (8, 8)}, {ended: 8})))
    unfetched = TopicPartition("lagtest.notify.retry.30s", 0)
    worker.lag_of("retry", SimpleNamespace(_consumer=FakeAiokafka({unfetched: (None, 0)})))
    worker.lag_of("stopped", SimpleNamespace(_consumer=None))

    await worker.sample_lag()
    assert lag_value("faust", "lagtest.incidents", 2) == 7
    assert lag_value("projection", "lagtest.delivery.events", 1) == 2
    assert lag_value("repeats", "lagtest.notify.repeats", 0) == 0
    assert lag_value("retry", "lagtest.notify.retry.30s", 0) is None  # no fetch yet

    consumer.assigned.clear()  # revoked in a rebalance
    await worker.sample_lag()
    assert lag_value("faust", "lagtest.incidents", 2) is None
    assert lag_value("projection", "lagtest.delivery.events", 1) == 2


async def test_the_endpoint_serves_probes_and_metrics() -> None:
    consumer = FakeFaustConsumer()
    port = free_port()
    worker, directory = endpoint(consumer, port)
    await worker.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).status_code == 200
            unready = await client.get("/readyz")
            assert unready.status_code == 503
            assert "users directory" in unready.text
            directory.ready.set()
            consumer.assigned.add(TopicPartition("incidents", 0))
            assert (await client.get("/readyz")).status_code == 200
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain")
            assert "notifier_notifications_queued_total" in metrics.text
            assert "notifier_incident_to_request_seconds" in metrics.text
    finally:
        await worker.stop()


async def test_a_port_in_use_leaves_the_worker_running_without_its_endpoint() -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        worker, _ = endpoint(FakeFaustConsumer(), port)
        await worker.start()
        try:
            assert not worker.should_stop
        finally:
            await worker.stop()


async def test_the_endpoint_shows_each_partition_as_the_consumer_holds_it() -> None:
    consumer = FakeFaustConsumer(started=False)
    port = free_port()
    worker, _ = endpoint(consumer, port)
    await worker.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            not_started = await client.get("/partitions")
            assert not_started.status_code == 503
            assert "not started" in not_started.json()["error"]
            consumer.started = True
            tp = TopicPartition("notify.slack", 5)
            consumer.assigned.add(tp)
            consumer._committed_offset[tp] = 8
            consumer._read_offset[tp] = 38
            found = (await client.get("/partitions")).json()
            row = found["partitions"]["notify.slack[5]"]
            assert (row["committed"], row["read"], row["acked"]) == (8, 38, 0)
    finally:
        await worker.stop()
