"""A one-agent Faust worker that tests/integration/test_faust_fixes.py runs against the real
broker, either on the worker's fixed transport and table manager or on Faust's own
(`--stock`), to show each defect the fixes answer and that the fixes remove it.

It writes one JSON object per line to its --out file (Faust takes stdout over):
{"seen": offset} per message its agent handles, {"call": "seek" | "resume"} when the
consumer seeks to its committed offsets or resumes stream partitions, and {"step": ...}
at the points a scenario waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.tables import TableManager
from faust.transport.drivers import aiokafka as driver

from processors.kafka_transport import SafeCommitConsumer
from processors.offsets import read_skipped_again
from processors.stalls import StallWatch, read_stalled_again
from processors.table_recovery import SeekFirstTableManager

OUT: list[Any] = []  # the --out file, opened in main()
HANDLED_FIRST = asyncio.Event()


def emit(**fields: Any) -> None:
    out = OUT[0]
    out.write(json.dumps(fields) + "\n")
    out.flush()


def probing(base: type[driver.Consumer], drop: set[int]) -> type[driver.Consumer]:
    """`base` that reports its seeks and resumes, and drops the fetched records at the
    offsets in `drop` once (what Faust does to fetched records around a rebalance)."""

    class Probing(base):  # type: ignore[misc,valid-type]
        async def _getmany(self, active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109
            records = await super()._getmany(active_partitions, timeout)
            for tp, batch in records.items():
                records[tp] = [r for r in batch if r.offset not in drop]
                drop.difference_update(r.offset for r in batch)
            return records

        async def perform_seek(self) -> None:
            emit(call="seek")
            await super().perform_seek()

        def resume_partitions(self, tps: Any) -> None:
            if tps:
                emit(call="resume")
            super().resume_partitions(tps)

    return Probing


def build(args: argparse.Namespace) -> faust.App:
    stock = args.stock
    consumer = probing(driver.Consumer if stock else SafeCommitConsumer, set(args.drop))

    class ProbeTransport(driver.Transport):
        Consumer = consumer

    class ProbeApp(faust.App):
        def _new_transport(self) -> Any:
            return ProbeTransport(self.conf.broker_consumer, self)

    app = ProbeApp(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        TableManager=TableManager if stock else SeekFirstTableManager,
        autodiscover=False,
        web_enabled=False,
        datadir=args.datadir,
        topic_partitions=1,
        broker_commit_interval=args.commit_interval,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
    )
    # a table makes recovery complete through `on_recovery_completed`, as in the worker
    app.Table(f"{args.topic}-probe", default=int, partitions=1)
    topic = app.topic(
        args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(topic)
    async def handle(stream: Any) -> None:
        async for event in stream.events():
            emit(seen=event.message.offset)
            HANDLED_FIRST.set()

    if not stock:

        async def read_again() -> None:
            await read_skipped_again(app, after_s=0.5)

        app.timer(0.5)(read_again)

        stalls = StallWatch(args.stall_after)

        async def stalled() -> None:
            read_stalled_again(app.consumer, stalls)

        app.timer(0.5)(stalled)

    if args.empty_active_partitions:

        async def empty_while_fetching() -> None:
            await empty_active_partitions_while_fetching(app, args)

        app.task(empty_while_fetching)

    return app


async def empty_active_partitions_while_fetching(app: faust.App, args: argparse.Namespace) -> None:
    """Once the agent has handled offset 0: empty Faust's active partitions while a fetch
    waits (as Faust does on a revoke), publish 5 messages, restore them 2 s later and
    publish a sixth."""
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap)
    await producer.start()
    try:
        await HANDLED_FIRST.wait()
        await asyncio.sleep(1.5)  # idle: the drain loop is now waiting in a fetch
        active: Any = app.consumer._active_partitions  # type: ignore[attr-defined]
        saved = set(active)
        active.clear()
        for n in range(5):
            await producer.send_and_wait(args.topic, f"late-{n}".encode(), partition=0)
        emit(step="published while no partition was active")
        await asyncio.sleep(2.0)
        active.update(saved)
        await producer.send_and_wait(args.topic, b"after", partition=0)
        emit(step="restored")
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--datadir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stock", action="store_true")
    parser.add_argument("--drop", type=int, nargs="*", default=[])
    parser.add_argument("--commit-interval", type=float, default=0.5)
    parser.add_argument("--empty-active-partitions", action="store_true")
    parser.add_argument("--stall-after", type=float, default=1.0)
    args = parser.parse_args()
    OUT.append(Path(args.out).open("a"))  # noqa: SIM115 (open for the life of the process)
    with socket.socket() as sock:  # two probes run at once: each its own web port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--web-port", str(port)]
    build(args).main()


if __name__ == "__main__":
    main()
