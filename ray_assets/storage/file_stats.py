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


def column_statistics(table: pa.Table) -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
    """Null counts, and exact min/max where Delta can hold them exactly, of each column."""
    null_counts: dict[str, int] = {}
    min_values: dict[str, Any] = {}
    max_values: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_nested(kind):
            continue
        null_counts[name] = column.null_count
        bounds = _min_max(column)
        if bounds is not None:
            min_values[name], max_values[name] = bounds
    return null_counts, min_values, max_values


def _min_max(column: pa.ChunkedArray) -> tuple[Any, Any] | None:
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
