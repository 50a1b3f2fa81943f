"""Kafka's default partitioning of keyed records, with each key's hash remembered."""

from __future__ import annotations

import random
from collections.abc import Sequence

from aiokafka.partitioner import murmur2


class CachedMurmur2Partitioner:
    """Partition = murmur2(key) mod partitions, as Java clients and aiokafka's default
    partitioner choose it, so one incident's records still share a partition with what
    other producers write. aiokafka's murmur2 is pure Python (~16 us a key, measured) and
    every record of an incident has the same key, so each key's hash is computed once."""

    def __init__(self, remembered: int = 100_000) -> None:
        self.remembered = remembered
        self._hashes: dict[bytes, int] = {}

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        """The partition of `key` among `all_partitions` (sorted); random when keyless."""
        if key is None:
            return random.choice(available or all_partitions)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.remembered:
                self._hashes.clear()  # a bound, not an LRU: a miss only costs one hash
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]
