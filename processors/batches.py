"""Batches of whatever has arrived, without a timer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


async def arrived_batches(source: AsyncIterator[T], most: int) -> AsyncGenerator[list[T], None]:
    """Yield what `source` has delivered since the last batch, at most `most` at a time.

    A batch goes as soon as one item is there; while it is handled the next one fills up,
    so batches grow with the load and an idle stream costs nothing. Faust's `take_events`
    instead wakes every `within` seconds per agent and holds each item up to that long: on
    the channel agents that polling was 6% of the worker's CPU (py-spy under make bench).
    At most `most` items wait beyond the batch being handled (backpressure on `source`).
    An error of `source` is raised here.
    """
    if most < 1:
        raise ValueError(f"most must be at least 1, not {most}")
    queue: asyncio.Queue[object] = asyncio.Queue(most)
    failure: list[BaseException] = []

    async def read() -> None:
        try:
            async for item in source:
                await queue.put(item)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, raised there
            failure.append(exc)
        await queue.put(_END)

    reader = asyncio.ensure_future(read())
    try:
        while True:
            first = await queue.get()
            batch: list[T] = []
            item = first
            while item is not _END:
                batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= most or queue.empty():
                    break
                item = queue.get_nowait()
            if batch:
                yield batch
            if item is _END:
                if failure:
                    raise failure[0]
                return
    finally:
        reader.cancel()
