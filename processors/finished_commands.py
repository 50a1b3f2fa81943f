"""The commands a channel agent has finished, so that a copy of one is not sent again.

A command's id is deterministic (notification and attempt), and a command can reach its
topic more than once: a throttle or retry forwarder re-emits what it had emitted before a
crash, a batch is handled again after a Kafka error or after the worker that took it died
before committing it. Every (notification, attempt) whose outcome this worker recorded is
remembered here, and after an assignment those recorded on `delivery.events` by anyone since
the partition's oldest uncommitted command (processors/recorded_results.py): a copy is then
not sent, whichever worker finished the original and whether or not it was restarted since.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from notifier.contracts.records import SendCommand

REMEMBERED = 200_000  # the most recently finished (notification, attempt) keys: ~25 MB


class FinishedCommands:
    """(notification, attempt) keys whose outcome was recorded, newest last."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        """Remember `key` as finished (the oldest forgotten past `size`)."""
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def add_all(self, keys: Iterable[str]) -> None:
        """Remember every one of `keys`."""
        for key in keys:
            self.add(key)

    def finished(self, command: SendCommand) -> bool:
        """Whether every notification `command` carries has its outcome for this attempt (a
        bundle led by a notification sent alone before carries others: not a copy)."""
        return all(key in self._keys for key in finished_keys(command))


def outcome_key(notification_id: str, attempt: int) -> str:
    """The key of one notification's attempt."""
    return f"{notification_id}#{attempt}"


def finished_keys(command: SendCommand) -> list[str]:
    """The keys `command` records outcomes for: its notification's and each bundled one's."""
    return [
        outcome_key(notification, command.attempt)
        for notification in (command.notification_id, *sorted(command.bundled))
    ]
