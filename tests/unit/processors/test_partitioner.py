"""The cached partitioner picks the partition aiokafka's default one picks."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from processors.partitioner import CachedMurmur2Partitioner

KEYS = [b"", b"a", b"inc-1", b"bench-0123456789-17", "ünïcødé".encode(), b"x" * 300]


@pytest.mark.parametrize("partitions", [1, 3, 6, 12, 50])
@pytest.mark.parametrize("key", KEYS)
def test_same_partition_as_the_default_partitioner(key: bytes, partitions: int) -> None:
    cached = CachedMurmur2Partitioner(remembered=2)
    everything = list(range(partitions))
    expected = DefaultPartitioner()(key, everything, everything)
    for _ in range(3):  # computed, then remembered, then possibly forgotten and computed
        assert cached(key, everything, everything) == expected
        cached(b"other", everything, everything)


def test_keyless_records_go_to_an_available_partition() -> None:
    cached = CachedMurmur2Partitioner()
    assert {cached(None, [0, 1, 2], [2]) for _ in range(20)} == {2}
    assert cached(None, [0, 1], []) in (0, 1)
