"""Faust's table manager with a recovery that seeks the streams before it resumes them.

Given to the app through Faust's `TableManager` setting (processors/app.py). Written for
the exact faust-streaming release the worker refuses to run without (processors/versions.py);
a test on a real broker (tests/integration/pipeline/test_faust_fixes.py) fails without it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP


class SeekFirstRecovery(Recovery):
    """Seeks the stream partitions to their committed offsets while they are still paused.

    Faust (`Recovery.on_recovery_completed`) resumes the stream partitions and only then
    seeks them (the order faust-streaming #216/#217 fixed in `_resume_streams`, but not
    here). When no table needed recovering the flow is already active, so the fetcher reads
    the resumed partitions at once; what the agents handle before the seek lands is read
    again after it and handled a second time by the same worker: a provider request sent
    twice.

    It also ends recovery of a changelog whose last offsets hold no record to apply (a
    transaction's commit marker, an aborted transaction): Faust waits for an event at the
    offset before the end and checks for this only in its exactly_once mode.
    """

    def active_remaining(self) -> Counter[TP]:
        """Faust's count of offsets left per active changelog partition, with nothing left
        where the fetcher passed over every offset after the last one applied up to the
        end without handing a record (`SafeCommitConsumer.skipped_by_log`)."""
        remaining = super().active_remaining()
        skipped_by_log = getattr(self.app.consumer, "skipped_by_log", None)
        if skipped_by_log is None:
            return remaining
        for tp, left in remaining.items():
            applied = self.active_offsets[tp]
            if left > 0 and skipped_by_log(tp, applied + 1, self.active_highwaters[tp] + 1):
                remaining[tp] = 0
        return remaining

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        app: Any = self.app
        consumer = app.consumer
        self.log.info("Restore complete!")
        await app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(
                    self.actives_for_table[table], self.standbys_for_table[table]
                )
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        assignment = consumer.assignment()
        if app.consumer_generation_id != generation_id:
            self.log.warning(
                "Recovery rebalancing again app id %s param %s",
                app.consumer_generation_id,
                generation_id,
            )
            return
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        self.completed.set()
        app.flow_control.resume()
        consumer.resume_flow()
        await app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")


class SeekFirstTableManager(TableManager):
    """Faust's table manager, recovering with `SeekFirstRecovery`."""

    @property
    def recovery(self) -> Recovery:
        """The recovery service of this table manager."""
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
