"""The projection's batch statements take one array per column: rows turned into columns."""

from __future__ import annotations

from typing import Any

import pytest

from projections.notification_log import as_columns


@pytest.mark.parametrize(
    ("rows", "width", "columns"),
    [
        ([], 3, [[], [], []]),
        ([("n1", 1, None)], 3, [["n1"], [1], [None]]),
        ([("n1", 1), ("n2", 2), ("n3", None)], 2, [["n1", "n2", "n3"], [1, 2, None]]),
    ],
)
def test_rows_become_columns(rows: list[tuple[Any, ...]], width: int, columns: Any) -> None:
    assert as_columns(iter(rows), width) == columns


@pytest.mark.parametrize("rows", [[("n1", 1), ("n2",)], [("n1",), ("n2",)]])
def test_a_row_of_another_width_is_refused(rows: list[tuple[Any, ...]]) -> None:
    with pytest.raises(ValueError):
        as_columns(rows, 2)
