"""Batches of what has arrived: at once, growing with the load, bounded, errors raised."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from processors.batches import arrived_batches


async def items_from(queue: asyncio.Queue[int | None]) -> AsyncIterator[int]:
    while (item := await queue.get()) is not None:
        yield item


async def test_one_item_goes_at_once_without_waiting_for_more() -> None:
    source: asyncio.Queue[int | None] = asyncio.Queue()
    batches = arrived_batches(items_from(source), 10)
    await source.put(1)
    assert await asyncio.wait_for(anext(batches), 1) == [1]
    await batches.aclose()


async def test_what_arrives_while_a_batch_is_handled_is_the_next_batch() -> None:
    source: asyncio.Queue[int | None] = asyncio.Queue()
    batches = arrived_batches(items_from(source), 3)
    await source.put(1)
    assert await anext(batches) == [1]
    for n in range(2, 9):  # seven arrive while [1] is being handled
        await source.put(n)
    await source.put(None)
    assert [b async for b in batches] == [[2, 3, 4], [5, 6, 7], [8]]


async def test_no_more_than_most_wait_beyond_the_batch_being_handled() -> None:
    pulled: list[int] = []

    async def counting() -> AsyncIterator[int]:
        for n in range(100):
            pulled.append(n)
            yield n

    batches = arrived_batches(counting(), 4)
    first = await anext(batches)
    for _ in range(20):  # let the reader run as far as it may
        await asyncio.sleep(0)
    assert len(pulled) <= len(first) + 4 + 1  # the batch, a full queue, one blocked in put
    await batches.aclose()


async def test_an_error_of_the_source_is_raised_after_what_came_before_it() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("broker gone")

    got: list[list[int]] = []
    with pytest.raises(RuntimeError, match="broker gone"):
        async for batch in arrived_batches(failing(), 5):
            got.append(batch)
    assert got == [[1]]


async def test_most_must_be_positive() -> None:
    async def nothing() -> AsyncIterator[int]:
        return
        yield

    with pytest.raises(ValueError, match="at least 1"):
        await anext(arrived_batches(nothing(), 0))


async def test_closing_the_batches_stops_the_reader() -> None:
    pulled: list[int] = []

    async def endless() -> AsyncIterator[int]:
        n = 0
        while True:
            pulled.append(n)
            yield n
            n += 1
            await asyncio.sleep(0)

    batches = arrived_batches(endless(), 2)
    await anext(batches)
    await batches.aclose()
    for _ in range(10):
        await asyncio.sleep(0)
    seen = len(pulled)
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(pulled) == seen  # nothing more is taken from the source
