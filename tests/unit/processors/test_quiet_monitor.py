"""The worker's Faust app keeps no per-message figures in its monitor."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types import TP

from notifier.settings import Settings
from processors.app import create_app
from processors.quiet_monitor import QuietMonitor


def test_the_worker_app_counts_nothing_per_message() -> None:
    app = create_app(Settings(projection_enabled=False), codec=object())  # type: ignore[arg-type]
    monitor: Any = app.monitor
    assert isinstance(monitor, QuietMonitor)
    tp = TP("notify.email", 0)
    message = SimpleNamespace(time_in=None)
    monitor.on_message_in(tp, 3, message)
    monitor.track_tp_end_offset(tp, 9)
    monitor.on_stream_event_in(tp, 3, object(), object())
    assert not monitor.events_total
    monitor.on_send_initiated(None, "notify.email", None, 1, 1)
    assert (monitor.messages_received_total, monitor.messages_sent) == (0, 0)
    assert not monitor.tp_end_offsets and message.time_in is None
