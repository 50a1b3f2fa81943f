"""Writing a topic in Kafka transactions, committed and aborted, as the dispatcher does."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer
from confluent_kafka import Consumer, TopicPartition


async def _write(
    bootstrap: str, topic: str, transactions: list[tuple[bool, list[bytes]]], key: bytes
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"test-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        for commit, values in transactions:
            await producer.begin_transaction()
            for value in values:
                await producer.send_and_wait(topic, value, key=key, partition=0)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()


def write_transactions(
    bootstrap: str, topic: str, transactions: list[tuple[bool, list[bytes]]], key: bytes = b'"k"'
) -> tuple[list[int], int]:
    """Write each (commit?, values) to partition 0 of `topic` in a transaction of its own,
    committed or aborted, under `key` (JSON, as a Faust table's changelog has it); return
    the offsets of the committed records and the end offset."""
    asyncio.run(_write(bootstrap, topic, transactions, key))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-read-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        end = settled_end(bootstrap, topic)
        consumer.assign([TopicPartition(topic, 0, 0)])
        offsets: list[int] = []
        while True:
            msg = consumer.poll(10)
            assert msg is not None, f"{topic}: no end of partition within 10 s"
            if msg.error() is not None:
                break  # the end of the partition
            offsets.append(int(msg.offset() or 0))
        return offsets, end
    finally:
        consumer.close()


def settled_end(bootstrap: str, topic: str, within_s: float = 30.0) -> int:
    """The end of partition 0 of `topic` once the markers of the transactions written to it
    are there: the coordinator writes them after the commit or abort has returned, and until
    then the last stable offset (the end a read_committed reader sees) lags the log's end."""
    stable = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "isolation.level": "read_committed"}
    )
    whole = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "isolation.level": "read_uncommitted",
        }
    )
    deadline = time.monotonic() + within_s
    try:
        while True:
            _, end = stable.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
            _, log_end = whole.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
            if end == log_end:
                return int(end)
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: stable end {end}, log end {log_end}, still")
            time.sleep(0.05)  # a poll for the broker's state: nothing here to wait on
    finally:
        stable.close()
        whole.close()
