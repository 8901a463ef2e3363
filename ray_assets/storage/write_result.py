"""What a write reports: the commit it made and the statistics its tasks collected.

Both stores return a `WriteResult`; `ray_assets.metadata` turns it into the Dagster metadata the
UI shows, whatever the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from ray_assets.storage.delta_commit import ConcurrentCommit
    from ray_assets.storage.file_stats import FileStats

_PROFILED_COLUMNS = 16


@dataclass(frozen=True)
class ColumnProfile:
    """One numeric column of a partition as the written files' statistics describe it."""

    null_count: int
    min: float | None
    max: float | None


@dataclass(frozen=True)
class PartitionWriteStats:
    """What one partition holds after a write."""

    rows: int
    files: int
    bytes: int
    profile: dict[str, ColumnProfile] = field(default_factory=dict, compare=False)
    """Numeric columns' nulls, min and max (empty when re-reported from an earlier commit)."""


@dataclass(frozen=True)
class WriteResult:
    """The outcome of a store's `write`: the commit and the statistics the tasks reported."""

    table_uri: str
    table_version: int
    """The Delta table version of the commit; for a Parquet table, the highest manifest
    version this write published (each partition counts its own publications)."""
    committed: bool
    """False when this write id had already committed: the table was left as it was."""
    rows_written: int
    files_written: int
    bytes_written: int
    partitions: dict[str, PartitionWriteStats]
    """By Dagster partition key; empty for an unpartitioned table."""
    schema: pa.Schema
    table_row_count: int
    duration_s: float
    stats_by_file: list[FileStats] = field(default_factory=list, repr=False)
    concurrent_commits: list[ConcurrentCommit] = field(default_factory=list)
    """Commits of other writers to this write's partitions made while it ran; it replaced them."""
    emptied_partitions: dict[str, int] = field(default_factory=dict)
    """Partition key -> rows it held before this write left it empty ("" when unpartitioned)."""
    gate_record: Any = None
    """What the write's gate (its checks) decided, as kept in the commit."""
    schema_changes: list[str] = field(default_factory=list)
    """How this write changed the table's schema (its `schema_evolution` allowed it)."""
    commit_attempts: int = 1
    """Delta: the commit's attempts; more than 1 when it lost races to concurrent writers."""
    profile: dict[str, ColumnProfile] = field(default_factory=dict)
    """Numeric columns of everything written (of the table, when unpartitioned)."""
    storage_kind: str = "deltalake"
    """`deltalake` or `parquet`: Dagster's `dagster/storage_kind` of the table."""

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def warnings(self) -> list[str]:
        """What a user must hear about this write although it succeeded."""
        messages = [
            f"{commit.describe()} while this write ran; this write replaced those rows "
            "(the last writer wins; on_concurrent_write='fail' fails instead)"
            for commit in self.concurrent_commits
        ]
        if self.emptied_partitions:
            emptied = ", ".join(
                f"{key!r} ({rows} rows before)" if key else f"the table ({rows} rows before)"
                for key, rows in self.emptied_partitions.items()
            )
            messages.append(f"the output had no rows for {emptied}: this write left them empty")
        if self.schema_changes:
            messages.append("the table's schema changed: " + "; ".join(self.schema_changes))
        return messages


def column_profile(files: Sequence[FileStats], schema: pa.Schema) -> dict[str, ColumnProfile]:
    """Nulls, min and max of the first numeric columns, from the files' statistics (a file
    whose column is all null has no min/max; none is taken when no file has them)."""
    numeric = [
        f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
    ][:_PROFILED_COLUMNS]
    profile = {}
    for name in numeric:
        nulls = sum(stats.null_counts.get(name, 0) for stats in files)
        lows = [stats.min_values[name] for stats in files if name in stats.min_values]
        highs = [stats.max_values[name] for stats in files if name in stats.max_values]
        profile[name] = ColumnProfile(
            null_count=nulls,
            min=float(min(lows)) if lows else None,
            max=float(max(highs)) if highs else None,
        )
    return profile


def schema_changes(before: pa.Schema, after: pa.Schema) -> list[str]:
    """The column-by-column changes from `before` to `after`, as a user reads them."""
    from ray_assets.storage.arrow_schema import schema_diff

    return [line.strip() for line in schema_diff(before, after)]
