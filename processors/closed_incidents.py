"""Which incidents are closed (acknowledged or resolved), as every worker reads it.

The dispatcher's incident memory (a Faust table) is the one fact of an incident's state; its
changelog is a compacted topic, durable across restarts. A worker's table holds only the
incidents of the partitions it owns, so every worker also follows the whole changelog here
and keeps the ids of the closed ones: the retry timers and the channel senders then read
"closed" for an incident whatever worker owns it, and again at once after a restart.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from typing import Any

from notifier.domain.dispatch import IncidentMemory
from notifier.settings import Settings
from processors.following import TopicFollower

log = logging.getLogger("notifier.closed")

REMEMBERED = 200_000  # closed incidents kept, the most recently closed: ~30 MB


def status_in_changelog(value: bytes | None) -> str:
    """The status an incident-memory changelog value records ("open" for a tombstone or a
    value that is not a stored memory)."""
    if value is None:
        return "open"
    try:
        data = json.loads(value)
    except ValueError:
        return "open"
    return IncidentMemory.status_of(data) if isinstance(data, dict) else "open"


class ClosedIncidents(TopicFollower):
    """Follows the incident-memory changelog: `status(incident_id)` for any incident."""

    def __init__(self, settings: Settings, changelog: str, **kwargs: Any) -> None:
        super().__init__(settings, changelog, **kwargs)
        self._closed: OrderedDict[str, str] = OrderedDict()

    def status(self, incident_id: str) -> str:
        """ "acknowledged" or "resolved" when closed; "open" otherwise (or not known)."""
        return self._closed.get(incident_id, "open")

    def __len__(self) -> int:
        return len(self._closed)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        incident_id = (key or b"").decode(errors="replace")
        if incident_id.startswith('"'):  # a JSON-serialized key
            incident_id = json.loads(incident_id)
        status = status_in_changelog(value)
        if status == "open":
            self._closed.pop(incident_id, None)
            return
        self._closed[incident_id] = status
        self._closed.move_to_end(incident_id)
        if len(self._closed) > REMEMBERED:
            self._closed.popitem(last=False)

    def on_caught_up(self) -> None:
        log.info("closed incidents read: %d", len(self._closed))
