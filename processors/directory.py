"""The users directory: every UserProfile of the compacted users topic, in memory.

Incidents are keyed by incident, users by user, so no partition holds both: every worker
reads all of `users`. (A Faust GlobalTable with `users` as its changelog was tried first; on
faust-streaming 0.15.3 it stalled in partition assignment. See docs/ARCHITECTURE.md.)
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from notifier.contracts.codec import AvroCodec
from notifier.contracts.errors import ContractError
from notifier.contracts.records import UserProfile
from notifier.domain.quiet_hours import check as check_quiet_hours
from notifier.settings import Settings
from notifier.topics import full_name
from processors.following import TopicFollower

log = logging.getLogger("notifier.directory")


CACHE_SIZE = 10_000  # decoded profiles kept; the rest stay as their Avro bytes


class UserDirectory(TopicFollower):
    """Reads `users` from the beginning and keeps following it; `ready` once caught up.

    Profiles are kept as the Avro bytes they arrived in (a few hundred bytes each, where a
    decoded profile costs kilobytes of Python objects) and decoded when asked for, the most
    recent `CACHE_SIZE` kept decoded: 100k users fit in tens of MB.
    """

    def __init__(self, settings: Settings, codec: AvroCodec, **kwargs: Any) -> None:
        super().__init__(settings, full_name(settings, "users"), **kwargs)
        self.codec = codec
        self._encoded: dict[str, bytes] = {}
        self._decoded: OrderedDict[str, UserProfile] = OrderedDict()

    def get(self, user_id: str) -> UserProfile | None:
        """The latest profile of `user_id`, or None."""
        profile = self._decoded.get(user_id)
        if profile is not None:
            self._decoded.move_to_end(user_id)
            return profile
        value = self._encoded.get(user_id)
        if value is None:
            return None
        decoded = self.codec.decode(value)  # decoded once already when it arrived
        assert isinstance(decoded, UserProfile)
        self._decoded[user_id] = decoded
        if len(self._decoded) > CACHE_SIZE:
            self._decoded.popitem(last=False)
        return decoded

    def __len__(self) -> int:
        return len(self._encoded)

    def on_caught_up(self) -> None:
        log.info("users directory ready: %d profiles", len(self._encoded))

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        user_id = (key or b"").decode(errors="replace")
        if value is None:  # tombstone: the user was deleted
            self._encoded.pop(user_id, None)
            self._decoded.pop(user_id, None)
            return
        try:
            profile = self.codec.decode(value)
        except ContractError as exc:
            log.warning("users: skipped an undecodable profile for %s: %s", user_id, exc.reason)
            return
        if isinstance(profile, UserProfile):
            problem = check_quiet_hours(profile)
            if problem is not None:
                # kept: the rest of the profile is good; its alerts go out at once
                log.warning("users: quiet hours of %s ignored: %s", user_id, problem)
            self._encoded[profile.user_id] = value
            self._decoded.pop(profile.user_id, None)

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
