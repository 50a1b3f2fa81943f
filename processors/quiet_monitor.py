"""Faust's monitor without its per-message bookkeeping.

Faust always installs a `Monitor` sensor, which keeps counts, timings and offsets for its
web views (turned off here) on every message in and out, every stream event, table write
and send: 1.7% of the worker's CPU under `make bench` (py-spy), for figures nothing reads.
The worker's own metrics (processors/metrics.py) and lag sampler say what an operator
needs. Rebalance and assignment hooks, rare, stay Faust's.
"""

from __future__ import annotations

from typing import Any

from faust.sensors.monitor import Monitor


class QuietMonitor(Monitor):
    """A `Monitor` whose per-message, per-event, per-table-write and per-send hooks do
    nothing (passed to `faust.App(monitor=...)`)."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        """Nothing kept."""

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        """Nothing kept (no state for `on_stream_event_out`)."""

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        """Nothing kept."""

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        """Nothing kept."""

    def on_table_get(self, table: Any, key: Any) -> None:
        """Nothing kept."""

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        """Nothing kept."""

    def on_table_del(self, table: Any, key: Any) -> None:
        """Nothing kept."""

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        """Nothing kept (no state for `on_send_completed`)."""

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        """Nothing kept."""

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        """Nothing kept (the emitter logs failed sends)."""

    def on_commit_initiated(self, consumer: Any) -> None:
        """Nothing kept."""

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        """Nothing kept."""

    def on_tp_commit(self, tp_offsets: Any) -> None:
        """Nothing kept."""

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        """Nothing kept (called for every record fetched)."""

    def count(self, metric_name: str, count: int = 1) -> None:
        """Nothing kept."""
