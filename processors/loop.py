"""Choosing the worker's event loop before anything asynchronous is built."""

from __future__ import annotations

from notifier.settings import Settings


def use_event_loop(settings: Settings) -> None:
    """Install the configured loop policy; call before the Faust app is created.

    uvloop costs less per callback and per socket read, where a busy worker spends most of
    its CPU (Faust, aiokafka, httpx and psycopg all run on it unchanged).
    """
    if settings.event_loop == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")
