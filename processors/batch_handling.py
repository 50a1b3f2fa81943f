"""Handling one channel batch so that it is always done: Kafka waited out, a failing
command set aside, never a batch left half-handled and unacknowledged."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("notifier.batches")
KAFKA_BACKOFF_S = (0.5, 1, 2, 5, 10)


def is_kafka_outage(exc: BaseException) -> bool:
    """The producer could not reach Kafka: worth waiting for, never a reason to drop."""
    from aiokafka.errors import KafkaError
    from faust.exceptions import ProducerSendError

    return isinstance(exc, KafkaError | ProducerSendError)


async def handle_until_done(
    events: list[Any],
    handle: Callable[[list[Any]], Awaitable[None]],
    dead_letter: Callable[[Any, BaseException], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Handle `events` until done. While Kafka is out the batch is tried again with backoff
    (at-least-once: a command sent before the outage may be sent again). Any other error
    is a command's: each is then handled alone and the one that fails is dead-lettered.

    An agent whose handler raised used to stop with its batch unacknowledged: commits halted
    at the first of them, and everything after was handled again at the next rebalance."""
    try:
        await _waiting_out_kafka(functools.partial(handle, events), sleep)
        return
    except Exception:
        log.exception("a batch of %d commands failed; handling each alone", len(events))
    for event in events:
        try:
            await _waiting_out_kafka(functools.partial(handle, [event]), sleep)
        except Exception as exc:
            await dead_letter(event, exc)


async def _waiting_out_kafka(
    call: Callable[[], Awaitable[None]], sleep: Callable[[float], Awaitable[None]]
) -> None:
    """`call()` again with backoff while Kafka is out; any other error is raised."""
    attempt = 0
    while True:
        try:
            await call()
            return
        except Exception as exc:
            if not is_kafka_outage(exc):
                raise
            delay = KAFKA_BACKOFF_S[min(attempt, len(KAFKA_BACKOFF_S) - 1)]
            log.warning("Kafka unavailable (%s); trying again in %s s", exc, delay)
            attempt += 1
            await sleep(delay)
