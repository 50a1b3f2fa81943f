"""A channel batch is always done: Kafka waited out, a failing command dead-lettered alone."""

from __future__ import annotations

from typing import Any

from aiokafka.errors import KafkaTimeoutError

from processors.batch_handling import handle_until_done


class Handler:
    """Fails as told: the first `outages` calls with a Kafka error, any call holding
    `poison` with a bug."""

    def __init__(self, outages: int = 0, poison: str | None = None) -> None:
        self.outages = outages
        self.poison = poison
        self.calls: list[list[str]] = []

    async def __call__(self, events: list[Any]) -> None:
        self.calls.append(list(events))
        if self.outages:
            self.outages -= 1
            raise KafkaTimeoutError()
        if self.poison in events:
            raise RuntimeError("no backoff step after attempt 9")


async def no_sleep(seconds: float) -> None:
    slept.append(seconds)


slept: list[float] = []


async def test_kafka_is_waited_out_and_the_batch_done_whole() -> None:
    slept.clear()
    handler, dead = Handler(outages=3), []

    async def dead_letter(event: Any, error: BaseException) -> None:
        dead.append(event)

    await handle_until_done(["a", "b"], handler, dead_letter, no_sleep)
    assert handler.calls == [["a", "b"]] * 4 and dead == []
    assert slept == [0.5, 1, 2]


async def test_a_failing_command_is_dead_lettered_and_the_rest_sent() -> None:
    slept.clear()
    handler = Handler(poison="b")
    dead: list[tuple[Any, str]] = []

    async def dead_letter(event: Any, error: BaseException) -> None:
        dead.append((event, str(error)))

    await handle_until_done(["a", "b", "c"], handler, dead_letter, no_sleep)
    assert handler.calls == [["a", "b", "c"], ["a"], ["b"], ["c"]]
    assert dead == [("b", "no backoff step after attempt 9")]
