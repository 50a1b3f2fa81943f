"""Faust's table manager with a recovery that seeks the streams before it resumes them.

Given to the app through Faust's `TableManager` setting (processors/app.py). Written for
the exact faust-streaming release the worker refuses to run without (processors/versions.py);
a test on a real broker (tests/integration/pipeline/test_faust_fixes.py) fails without it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.tables import TableManager
from faust.tables.recovery import Recovery


class SeekFirstRecovery(Recovery):
    """Seeks the stream partitions to their committed offsets while they are still paused.

    Faust (`Recovery.on_recovery_completed`) resumes the stream partitions and only then
    seeks them (the order faust-streaming #216/#217 fixed in `_resume_streams`, but not
    here). When no table needed recovering the flow is already active, so the fetcher reads
    the resumed partitions at once; what the agents handle before the seek lands is read
    again after it and handled a second time by the same worker: a provider request sent
    twice.
    """

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
