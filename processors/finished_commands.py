"""The commands a channel agent has finished, so that a copy of one is not sent again.

A command's id is deterministic (notification and attempt), and a command can reach its
topic more than once: the dispatcher re-emits what it had emitted before a crash, a batch is
handled again after a Kafka error. A copy read by the worker that finished the original is
recognised here and not sent (the chaos drill's extra provider requests came mostly from a
worker that was never killed). In memory: a copy read after a restart, or by another worker,
is not caught here.
"""

from __future__ import annotations

from collections import OrderedDict

from notifier.contracts.records import SendCommand

REMEMBERED = 200_000  # the most recently finished command ids: ~25 MB


class FinishedCommands:
    """Command ids whose provider request was made and outcome handed to Kafka, newest last."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, command_id: str) -> None:
        """Remember `command_id` as finished (the oldest forgotten past `size`)."""
        self._ids[command_id] = None
        self._ids.move_to_end(command_id)
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)


def finished_key(command: SendCommand) -> str:
    """What makes two commands copies: the command id, and for a bundle also what it carries
    (a bundle led by a notification sent alone before is a new message, not a copy)."""
    if not command.bundled:
        return command.command_id
    return command.command_id + "+" + ",".join(sorted(command.bundled))
