"""The worker half of every write: Ray tasks write Hive-layout Parquet files and describe them.

Both stores write their data files here (`DeltaStore` commits them to a Delta log,
`ParquetStore` publishes them in partition manifests). It is imported only when a write runs,
so `import ray_assets` does not import Ray. This follows the shape of Ray's own `Datasink`: each
task writes its files under fresh names and returns a small report; the driver makes the one
decision, the commit. Unlike Ray's
`write_delta`, the task checks every row's partition value against the run's slice and the
schema against the table's, so a stray row or a drifted column is found while the data streams
by, not after a commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray.data.block import BlockAccessor  # noqa: TID253 (imported lazily by DeltaStore.write)
from ray.data.datasource.datasink import Datasink  # noqa: TID253

from ray_assets.errors import PartitionColumnError, SchemaMismatchError
from ray_assets.partition_slice import PartitionSlice, canonical_partition_strings
from ray_assets.storage.arrow_schema import (
    delta_schema,
    refuse_untyped_columns,
    schema_diff,
    to_delta_types,
    with_known_types,
)
from ray_assets.storage.file_stats import FileStats, TaskWriteReport, column_statistics
from ray_assets.storage.filesystem import resolve_filesystem
from ray_assets.storage.schema_evolution import SchemaEvolution, evolve, merge
from ray_assets.storage.worker_options import WorkerOptions

if TYPE_CHECKING:
    from ray.data.datasource.datasink import WriteResult

_SEPARATOR = "\x1f"  # Dagster refuses control characters in partition keys


_HIVE_ESCAPED = frozenset("\"#%'*/:=?\\\x7f{[]^") | frozenset(map(chr, range(0x20)))
"""Characters Hive (and Spark's `escapePathName`) escape in partition directory names."""


def hive_escape(text: str) -> str:
    """`text` with the characters Hive escapes written as `%XX`: a space stays a space."""
    return "".join(f"%{ord(c):02X}" if c in _HIVE_ESCAPED else c for c in text)


def partition_directory(columns: Iterable[str], values: Iterable[str]) -> str:
    """Hive directory of one partition: `col=value/...`, names and values escaped.

    Escaping `/` and `=` keeps every partition one directory level per column inside the table
    root, whatever the column name or the key holds (`Order Date/x` stays one level). Names are
    escaped as Hive and Spark escape them (so `Order Date` reads back as itself in engines that
    parse directory names); values are percent-encoded as delta-rs writes them. Delta readers
    take partition values from the log, where the path is stored URI-encoded.
    """
    return "/".join(
        f"{hive_escape(column)}={quote(value, safe='-_.')}"
        for column, value in zip(columns, values, strict=True)
    )


class BlockObserver(Protocol):
    """Looks at every block a write task is about to write (its rows of one partition): how
    `ray_assets.checks` evaluates row checks on exactly the rows written, in the same pass."""

    def start(self) -> Any:
        """A fresh state for one write task."""

    def observe(self, state: Any, partition_values: tuple[str, ...], rows: pa.Table) -> None:
        """Add one block of one partition (stored partition values; `()` when unpartitioned)."""

    def finish(self, state: Any) -> Any:
        """What the task reports to the driver (small: it travels through the object store)."""


class TableFilesSink(Datasink):
    """Writes a dataset as data files of one table, without committing them."""

    def __init__(
        self,
        *,
        table_uri: str,
        storage_options: Mapping[str, str] | None,
        partition_columns: tuple[str, ...],
        partition_slice: PartitionSlice | None,
        expected_schema: pa.Schema | None,
        write_uuid: str,
        declared_types: Mapping[str, pa.DataType] | None = None,
        compression: str = "snappy",
        schema_evolution: SchemaEvolution = "strict",
        observer: BlockObserver | None = None,
    ) -> None:
        self._table_uri = table_uri
        self._storage_options = WorkerOptions(storage_options or {})
        self._partition_columns = partition_columns
        self._partition_slice = partition_slice
        self._allowed_values: frozenset[tuple[str, ...]] | None = None
        self._expected_schema = expected_schema
        self._declared_types = dict(declared_types or {})
        self._write_uuid = write_uuid
        self._compression = compression
        self._schema_evolution = schema_evolution
        self._observer = observer
        self.reports: list[TaskWriteReport] = []

    def get_name(self) -> str:
        return "TableFiles"

    # ------------------------------------------------------------------ worker side
    def write(self, blocks: Iterable[Any], ctx: Any) -> TaskWriteReport:
        filesystem, root = resolve_filesystem(self._table_uri, self._storage_options.get())
        report = TaskWriteReport()
        seen = self._observer.start() if self._observer is not None else None
        for block_index, block in enumerate(blocks):
            table = BlockAccessor.for_block(block).to_arrow()
            schema = self._checked_schema(table.schema, report.schema)
            report.schema = _merged(report.schema, schema)
            if table.num_rows == 0:
                continue
            table = to_delta_types(table, schema)
            name = f"part-{self._write_uuid}-{ctx.task_idx:05d}-{block_index:05d}.parquet"
            if not self._partition_columns:
                self._observe(seen, (), table)
                report.files.append(self._write_file(filesystem, root, table, {}, name))
                continue
            for values, rows in self._split_by_partition(table, report):
                self._observe(seen, values, rows)
                partition_values = dict(zip(self._partition_columns, values, strict=True))
                report.files.append(
                    self._write_file(filesystem, root, rows, partition_values, name)
                )
        if self._observer is not None:
            report.observations = self._observer.finish(seen)
        return report

    def _observe(self, seen: Any, values: tuple[str, ...], rows: pa.Table) -> None:
        if self._observer is not None:
            self._observer.observe(seen, values, rows)

    def _checked_schema(self, schema: pa.Schema, seen: pa.Schema | None) -> pa.Schema:
        normalized = delta_schema(schema)
        missing = [c for c in self._partition_columns if c not in normalized.names]
        if missing:
            raise PartitionColumnError(
                f"the data has no partition column {missing}; its columns are {normalized.names}"
            )
        reference = self._expected_schema or seen
        normalized = with_known_types(normalized, reference, self._declared_types)
        if self._expected_schema is not None:
            evolved = evolve(self._expected_schema, normalized, self._schema_evolution)
            written = pa.schema([evolved.field(n) for n in evolved.names if n in normalized.names])
            refuse_untyped_columns(written)  # a new column that is all null has no type
            return written
        if reference is not None:
            diff = schema_diff(reference, normalized)
            if diff:
                raise SchemaMismatchError(
                    "the data's schema differs from earlier blocks, column by column:\n"
                    + "\n".join(diff)
                )
            return reference
        refuse_untyped_columns(normalized)
        return normalized

    def _split_by_partition(
        self, table: pa.Table, report: TaskWriteReport
    ) -> Iterable[tuple[tuple[str, ...], pa.Table]]:
        """The block's rows of each partition, in the order the block first holds each.

        One dictionary encoding of the partition text finds the partitions; rows then leave as
        zero-copy slices. A block already grouped by partition (a daily pipeline's blocks hold
        runs of days) is sliced as it is; any other is reordered once, stably. Filtering the
        block once per partition instead cost a pass over every row per partition: 0.03 s of a
        0.09 s write of a 250,000-row block spanning 25 days.
        """
        texts = []
        for column in self._partition_columns:
            try:
                texts.append(canonical_partition_strings(table.column(column)))
            except PartitionColumnError as error:
                raise PartitionColumnError(f"partition column '{column}': {error}") from None
        combined = texts[0] if len(texts) == 1 else pc.binary_join_element_wise(*texts, _SEPARATOR)
        if isinstance(combined, pa.ChunkedArray):
            combined = combined.combine_chunks()
        if combined.null_count:
            null_key = (None,) * len(self._partition_columns)
            report.stray_counts[null_key] = (
                report.stray_counts.get(null_key, 0) + combined.null_count
            )
            present = pc.is_valid(combined)
            table, combined = table.filter(present), combined.filter(present)
        encoded = pc.dictionary_encode(combined)
        keys = encoded.dictionary.to_pylist()
        codes = encoded.indices  # numbered by first appearance
        if len(keys) > 1 and not pc.all(pc.less_equal(codes[:-1], codes[1:])).as_py():
            order = pc.sort_indices(codes)  # stable: rows keep their order within a partition
            table, codes = table.take(order), codes.take(order)
        counts = np.bincount(codes.to_numpy(), minlength=len(keys)).tolist()
        offset = 0
        for key, count in zip(keys, counts, strict=True):
            rows = table.slice(offset, count)
            offset += count
            values = tuple(key.split(_SEPARATOR)) if len(texts) > 1 else (key,)
            if self._partition_slice is not None and values not in self._allowed(table.schema):
                report.stray_counts[values] = report.stray_counts.get(values, 0) + count
                continue
            yield values, rows

    def _allowed(self, schema: pa.Schema) -> frozenset[tuple[str, ...]]:
        """The slice's partition values as this data's column types store them."""
        if self._allowed_values is None:
            assert self._partition_slice is not None
            types = {column: schema.field(column).type for column in self._partition_columns}
            self._allowed_values = frozenset(self._partition_slice.stored_values(types))
        return self._allowed_values

    def _write_file(
        self,
        filesystem: Any,
        root: str,
        table: pa.Table,
        partition_values: dict[str, str],
        name: str,
    ) -> FileStats:
        data = table.drop_columns(list(partition_values)) if partition_values else table
        directory = partition_directory(partition_values, partition_values.values())
        relative = f"{directory}/{name}" if directory else name
        path = f"{root}/{relative}"
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        # The writer is closed here rather than by `pq.write_table`: when the disk fills up,
        # `write_table` reports only "file metadata is only available after writer close",
        # hiding the OSError (No space left on device) that closing the file raised.
        with filesystem.open_output_stream(path) as stream:
            writer = pq.ParquetWriter(
                stream,
                data.schema,
                compression=self._compression,
                use_dictionary=dictionary_columns(data.schema),
            )
            try:
                writer.write_table(data)
            finally:
                writer.close()
        null_counts, min_values, max_values = column_statistics(data, writer.writer.metadata)
        return FileStats(
            path=relative,
            partition_values=partition_values,
            num_rows=data.num_rows,
            size_bytes=filesystem.get_file_info(path).size,
            null_counts=null_counts,
            min_values=min_values,
            max_values=max_values,
        )

    # ------------------------------------------------------------------ driver side
    def on_write_complete(self, write_result: WriteResult) -> None:
        self.reports = [report for report in write_result.write_returns if report is not None]


def _merged(seen: pa.Schema | None, schema: pa.Schema) -> pa.Schema:
    if seen is None or seen.equals(schema):
        return schema
    merged = merge(seen, schema)
    if merged is None:
        raise SchemaMismatchError(
            "blocks of the pipeline disagree on the schema, column by column:\n"
            + "\n".join(schema_diff(seen, schema))
        )
    return merged


def dictionary_columns(schema: pa.Schema) -> list[str] | bool:
    """Columns worth dictionary encoding: text and binary, where values repeat.

    pyarrow's default tries a dictionary on every column and falls back page by page; on
    high-cardinality numbers (ids, amounts, timestamps) that attempt is wasted work, measured at
    about 40% of the write time of an orders table, for files about 7% smaller.
    """
    text_like = (
        pa.types.is_string,
        pa.types.is_large_string,
        pa.types.is_binary,
        pa.types.is_large_binary,
        pa.types.is_dictionary,
    )
    names = [f.name for f in schema if any(check(f.type) for check in text_like)]
    return names or False
