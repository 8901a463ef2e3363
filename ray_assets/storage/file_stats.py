"""What a Ray write task reports about each data file it wrote.

The driver never sees the data, only these descriptions: they become the Delta add actions
(with the statistics readers use to skip files) and the metadata shown in Dagster.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Delta readers truncate string statistics; a longer value would need a truncated max that is
# still an upper bound. Omitting the column's min/max is always correct.
_MAX_STRING_STAT_CHARS = 32


@dataclass(frozen=True)
class FileStats:
    """One data file written by a task: where, how big, and its column statistics."""

    path: str  # relative to the table root, as on disk (not URI-encoded)
    partition_values: dict[str, str]
    num_rows: int
    size_bytes: int
    null_counts: dict[str, int]
    min_values: dict[str, Any]
    max_values: dict[str, Any]

    def delta_stats_json(self) -> str:
        """The `stats` field of the Delta add action."""
        return json.dumps(
            {
                "numRecords": self.num_rows,
                "minValues": self.min_values,
                "maxValues": self.max_values,
                "nullCount": self.null_counts,
            }
        )


@dataclass
class TaskWriteReport:
    """Everything one write task returns to the driver."""

    files: list[FileStats] = field(default_factory=list)
    stray_counts: dict[tuple[str | None, ...], int] = field(default_factory=dict)
    schema: pa.Schema | None = None  # full schema (Delta types), partition columns included
    observations: Any = None
    """What the write's `BlockObserver` (its row checks) saw in this task."""


def column_statistics(
    table: pa.Table, footer: pq.FileMetaData | None = None
) -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
    """Null counts, and exact min/max where Delta can hold them exactly, of each column.

    `footer` is the metadata of the Parquet file just written from `table`: its writer already
    computed min/max per row group, so those are reused instead of a second pass over the data
    (on text columns that pass cost about a fifth of the write). Columns the footer does not
    describe exactly are computed from the data.
    """
    null_counts: dict[str, int] = {}
    min_values: dict[str, Any] = {}
    max_values: dict[str, Any] = {}
    leaves = _footer_leaves(footer) if footer is not None else {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_nested(kind):
            continue
        null_counts[name] = column.null_count
        bounds = _min_max(column, _footer_bounds(footer, leaves.get(name), kind))
        if bounds is not None:
            min_values[name], max_values[name] = bounds
    return null_counts, min_values, max_values


def _footer_leaves(footer: pq.FileMetaData) -> dict[str, int]:
    if footer.num_row_groups == 0:
        return {}
    first = footer.row_group(0)
    return {first.column(j).path_in_schema: j for j in range(first.num_columns)}


_FOOTER_EXACT_TYPES = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_date32,
)


def _footer_bounds(
    footer: pq.FileMetaData | None, index: int | None, kind: pa.DataType
) -> tuple[Any, Any] | None:
    """(min, max) over the row groups from the footer, or None when it cannot say exactly."""
    if footer is None or index is None or not any(check(kind) for check in _FOOTER_EXACT_TYPES):
        return None
    if pa.types.is_float16(kind):  # stored as fixed-size binary; its statistics are bytes
        return None
    lows, highs = [], []
    for g in range(footer.num_row_groups):
        group = footer.row_group(g)
        statistics = group.column(index).statistics
        if statistics is None:
            return None
        if statistics.has_min_max:
            lows.append(statistics.min)
            highs.append(statistics.max)
        elif not statistics.has_null_count or statistics.null_count != group.num_rows:
            return None  # values without bounds (e.g. dropped as too long): compute them
    return (min(lows), max(highs)) if lows else None


def _min_max(
    column: pa.ChunkedArray, known: tuple[Any, Any] | None = None
) -> tuple[Any, Any] | None:
    kind = column.type
    if column.null_count == len(column) or len(column) == 0:
        return None
    if pa.types.is_boolean(kind) or pa.types.is_binary(kind) or pa.types.is_decimal(kind):
        return None
    if pa.types.is_timestamp(kind):
        # Delta stores timestamp statistics in milliseconds; a truncated max is no upper bound.
        return None
    if pa.types.is_floating(kind) and pc.any(pc.is_nan(column)).as_py():
        return None
    if known is not None:
        low, high = known
    else:
        result = pc.min_max(column)
        low, high = result["min"].as_py(), result["max"].as_py()
    if isinstance(low, float) and (math.isinf(low) or math.isinf(high)):
        return None
    if isinstance(low, str) and (
        len(low) > _MAX_STRING_STAT_CHARS or len(high) > _MAX_STRING_STAT_CHARS
    ):
        return None
    if isinstance(low, dt.date):
        return low.isoformat(), high.isoformat()
    return low, high
