"""A write between its two phases: the files are written, nothing is committed yet.

A store's `write` hands a `StagedWrite` to its gate (the asset's checks) before the commit, so
the gate decides on exactly the data about to become visible, from what the write tasks
reported, without running the pipeline again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ray_assets.storage.filesystem import resolve_filesystem

if TYPE_CHECKING:
    from ray_assets.partition_slice import PartitionSlice
    from ray_assets.storage.file_stats import FileStats

WHOLE_TABLE = ""
"""The partition key under which an unpartitioned write's figures are kept."""


@dataclass(frozen=True)
class StagedWrite:
    """The written, uncommitted files of one write and what its tasks reported about them."""

    partition_slice: PartitionSlice
    schema: pa.Schema
    files: Sequence[FileStats]
    observations: Sequence[Any]
    """What each write task's `BlockObserver` reported (None from tasks that wrote nothing)."""
    table_uri: str
    storage_options: Mapping[str, str] = field(default_factory=dict)
    key_of: Mapping[tuple[str, ...], str] = field(default_factory=dict)
    """Stored partition values -> Dagster partition key (empty when unpartitioned)."""
    write_uuid: str = ""
    """The part of the files' names that is this write's (its `write_records` entry)."""

    @property
    def keys(self) -> list[str]:
        """The write's partition keys (`[WHOLE_TABLE]` when unpartitioned), in slice order."""
        return list(self.partition_slice.keys or (WHOLE_TABLE,))

    def partition_key(self, values: tuple[str, ...]) -> str:
        """The Dagster key of a file's stored partition values."""
        return self.key_of[values] if self.key_of else WHOLE_TABLE

    def key_of_file(self, stats: FileStats) -> str:
        """The Dagster key of the partition a written file belongs to."""
        columns = self.partition_slice.columns
        return self.partition_key(tuple(stats.partition_values[c] for c in columns))

    def rows_by_key(self) -> dict[str, int]:
        """Rows written per partition key; every key of the write, with 0 for an empty one."""
        rows: Counter[str] = Counter({key: 0 for key in self.keys})
        for stats in self.files:
            rows[self.key_of_file(stats)] += stats.num_rows
        return dict(rows)

    def null_counts_by_key(self) -> dict[str, dict[str, int]]:
        """Nulls written per partition key and column, from the files' statistics."""
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for stats in self.files:
            counts[self.key_of_file(stats)].update(stats.null_counts)
        return {key: dict(values) for key, values in counts.items()}

    def read_rows(self, key: str, columns: Sequence[str]) -> Iterator[pa.Table]:
        """The written rows of partition `key`, `columns` only, read back on the driver."""
        filesystem, root = resolve_filesystem(self.table_uri, self.storage_options)
        for stats in self.files:
            if self.key_of_file(stats) != key:
                continue
            stored = [c for c in columns if c not in stats.partition_values]
            with filesystem.open_input_file(f"{root}/{stats.path}") as handle:
                table = pq.read_table(handle, columns=stored)
            for column in columns:
                if column in stats.partition_values:
                    value = pa.array([stats.partition_values[column]] * table.num_rows)
                    table = table.append_column(column, value)
            yield table.select(list(columns))

    def forget(self) -> None:
        """Drop the write's record: it committed, or its files are gone."""
        if self.write_uuid:
            from ray_assets.storage.write_records import forget_write

            filesystem, root = resolve_filesystem(self.table_uri, self.storage_options)
            forget_write(filesystem, root, self.write_uuid)

    def remove_files(self) -> int:
        """Delete the written files (the write will not commit them) and the write's record;
        how many files were removed."""
        filesystem, root = resolve_filesystem(self.table_uri, self.storage_options)
        removed = 0
        for stats in self.files:
            try:
                filesystem.delete_file(f"{root}/{stats.path}")
                removed += 1
            except OSError:
                continue  # an orphan left for vacuum: never visible, never committed
        self.forget()
        return removed
