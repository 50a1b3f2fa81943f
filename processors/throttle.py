"""The throttle agent: SMS and voice commands pass here, per person, on their way to their
channel. What fits the person's windows goes on at once; what does not waits in the
`throttle-state` table and goes out as one bundled message when the windows open (a
ThrottleFlushDue on `throttle.timers`, held by the retry scheduler until due, brings it
back here). The rules are notifier/domain/throttle.py.

Commands held for the person's quiet hours (the dispatcher set their `not_before` to the
end of the window) come here on any channel and wait the same way, until then.

The input, `notify.throttle`, is keyed by user id and the table by `user|channel`: a
table's changelog goes to the partition of the event being handled, so a person's state
lives with the person's events. Retries do not come back here (the retry scheduler sends
them to their channel), and alerts of incidents closed meanwhile are the channel sender's
to cancel.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any

from notifier.contracts.records import Channel, Record, SendCommand, ThrottleFlushDue
from notifier.domain import ids
from notifier.domain.throttle import Decision, ThrottleState, Windows, decide, flush, waits
from notifier.topics import channel_topic

log = logging.getLogger("notifier.throttle")
Outgoing = list[tuple[str, str, Record]]
TABLE = "throttle-state"


def state_key(user_id: str, channel: Channel) -> str:
    """The table key of one person's throttle on one channel."""
    return f"{user_id}|{channel.value}"


def flush_timer(
    user_id: str, channel: Channel, due_at: datetime, now: datetime
) -> ThrottleFlushDue:
    """The timer that brings a person's held messages back when the windows open; the same
    due time gives the same event id."""
    return ThrottleFlushDue(
        event_id=ids.event_id(user_id, channel.value, "throttle-flush", due_at.isoformat()),
        occurred_at=now,
        due_at=due_at,
        user_id=user_id,
        channel=channel,
    )


def throttle(
    record: Record, table: MutableMapping[str, Any], windows: Windows, now: datetime
) -> Outgoing:
    """Fold one command or flush timer into the person's state in `table`; what to emit."""
    if isinstance(record, SendCommand):
        key = state_key(record.user_id, record.channel)
        state, decision = decide(ThrottleState.from_json(table.get(key)), record, now, windows)
        user_id, channel = record.user_id, record.channel
    elif isinstance(record, ThrottleFlushDue):
        key = state_key(record.user_id, record.channel)
        state, decision = flush(
            ThrottleState.from_json(table.get(key)), record.channel, record.due_at, now, windows
        )
        user_id, channel = record.user_id, record.channel
    else:
        raise TypeError(f"{type(record).__name__} does not pass the throttle")
    table[key] = state.to_json()
    _log(record, decision, state, now)
    out: Outgoing = []
    if decision.send is not None:
        out.append((channel_topic(channel), decision.send.incident_id, decision.send))
    if decision.flush_at is not None:
        out.append(
            ("throttle.timers", user_id, flush_timer(user_id, channel, decision.flush_at, now))
        )
    return out


def _log(record: Record, decision: Decision, state: ThrottleState, now: datetime) -> None:
    extra = {
        "incident_id": getattr(record, "incident_id", None),
        "notification_id": getattr(record, "notification_id", None),
        "user_id": getattr(record, "user_id", None),
    }
    if decision.send is not None and decision.send.bundled:
        log.info(
            "bundle sent: %d notifications in one message, %d still held",
            len(decision.send.bundled) + 1,
            len(state.held),
            extra={**extra, "incident_id": decision.send.incident_id},
        )
    elif decision.held and isinstance(record, SendCommand):
        if record.not_before is not None and waits(record, now):
            log.info(
                "held for quiet hours until %s: %d waiting",
                record.not_before.isoformat(),
                len(state.held),
                extra=extra,
            )
        else:
            log.info("held by the throttle: %d waiting", len(state.held), extra=extra)
