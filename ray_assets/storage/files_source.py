"""The read half of every store: a Ray datasource over an exact list of a table's data files.

The store decides *which* files on the driver (`DeltaStore` from one version of the transaction
log, `ParquetStore` from the partition manifests), pruned to the slice; the tasks read them
with pyarrow and put the partition columns back with the table's types. Listing the files
ourselves is what makes pruning exact and testable (`Dataset.input_files()` names them), and it
keeps deltalake's scanner, which can abort the interpreter at exit, out of the process.
Imported lazily by the stores' `read`.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray  # noqa: TID253 - imported lazily by the stores
import ray.data  # noqa: TID253
from ray.data.block import BlockMetadata  # noqa: TID253
from ray.data.datasource import Datasource, ReadTask  # noqa: TID253

from ray_assets.cluster import cluster_cpus
from ray_assets.partition_slice import partition_value_scalar
from ray_assets.storage.filesystem import resolve_filesystem
from ray_assets.storage.worker_options import WorkerOptions

_BATCH_ROWS = 128 * 1024
_TASKS_PER_CPU = 4
_MAX_TASK_BYTES = 256 * 1024**2
_MIN_TASK_BYTES = 8 * 1024**2
"""Below this much data per task, a task's fixed cost (start, filesystem, first request)
outweighs what parallelism saves: one partition of 4 MB read by 8 tasks took 0.5 s, by one
0.1 s."""


@dataclass(frozen=True)
class DataFile:
    """One data file of a table version, as the log describes it."""

    path: str  # path inside the filesystem of the table
    partition_values: Mapping[str, str | None]
    num_rows: int | None
    size_bytes: int


class FileGroupsDatasource(Datasource):
    """A datasource over files listed on the driver: each read task reads a size-balanced group
    of `_files` with `_read_files`, and its block metadata comes from the list (row counts when
    every file's is known, as in a Delta log; unknown otherwise)."""

    _files: list[DataFile]
    output_schema: pa.Schema

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(file.size_bytes for file in self._files)

    def read_task_count(self, cluster_cpus: float) -> int:
        """As many read tasks as keep every CPU busy with some to balance (4 per CPU), fewer
        when a task would get under 8 MiB of files, more only when a task would get over
        256 MiB, never more than one per file."""
        size = self.estimate_inmemory_data_size() or 0
        worth_it = max(1, math.ceil(size / _MIN_TASK_BYTES))
        wanted = max(
            min(int(cluster_cpus) * _TASKS_PER_CPU, worth_it), math.ceil(size / _MAX_TASK_BYTES)
        )
        return max(1, min(len(self._files), wanted))

    def dataset(self) -> ray.data.Dataset:
        """The lazy dataset of the files, read by exactly `read_task_count` tasks. Left to
        itself, Ray asks every read for 200 blocks and splits each task's output to get them;
        a split read cannot fuse with the map that follows, so every block would cross the
        object store once more for nothing."""
        cpus = max(1, cluster_cpus())
        return ray.data.read_datasource(self, override_num_blocks=self.read_task_count(cpus))

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        groups = _balanced_groups(self._files, max(1, min(parallelism, len(self._files))))
        tasks = []
        for group in groups:
            rows = [file.num_rows for file in group]
            metadata = BlockMetadata(
                num_rows=None if None in rows else sum(rows),  # type: ignore[arg-type]
                size_bytes=sum(file.size_bytes for file in group),
                exec_stats=None,
                input_files=[file.path for file in group],
            )
            tasks.append(
                ReadTask(
                    lambda group=group: self._read_files(group),
                    metadata,
                    schema=self.output_schema,
                    per_task_row_limit=per_task_row_limit,
                )
            )
        return tasks

    def _read_files(self, files: Sequence[DataFile]) -> Iterator[pa.Table]:
        raise NotImplementedError


class TableFilesDatasource(FileGroupsDatasource):
    """Reads the given files of one table, projecting `columns` and restoring partition columns.

    A file written before a column was added reads that column as nulls, and one written before
    a column was widened is cast to the table's type: schema evolution never rewrites files."""

    def __init__(
        self,
        *,
        files: Sequence[DataFile],
        table_schema: pa.Schema,
        partition_columns: Sequence[str],
        columns: Sequence[str] | None,
        table_uri: str,
        storage_options: Mapping[str, str] | None,
        name: str = "DeltaTable",
    ) -> None:
        super().__init__()
        self._name = name
        self._files = list(files)
        self._partition_columns = list(partition_columns)
        wanted = set(columns) if columns is not None else set(table_schema.names)
        wanted.update(self._partition_columns)
        self.output_schema = pa.schema([f for f in table_schema if f.name in wanted])
        self._data_columns = [
            n for n in self.output_schema.names if n not in self._partition_columns
        ]
        self._table_uri = table_uri
        self._storage_options = WorkerOptions(storage_options or {})

    def get_name(self) -> str:
        return self._name

    def _read_files(self, files: Sequence[DataFile]) -> Iterator[pa.Table]:
        filesystem, _ = resolve_filesystem(self._table_uri, self._storage_options.get())
        for file, opened in _opened_in_order(filesystem, files):
            with opened as handle:
                parquet = pq.ParquetFile(handle)
                # a file written before a column was added has no such column: read as nulls
                stored = set(parquet.schema_arrow.names)
                present = [c for c in self._data_columns if c in stored]
                if present:
                    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=present):
                        yield self._with_partition_columns(
                            pa.Table.from_batches([batch]), batch.num_rows, file
                        )
                else:
                    for index in range(parquet.num_row_groups):
                        rows = parquet.metadata.row_group(index).num_rows
                        yield self._with_partition_columns(pa.table({}), rows, file)

    def _with_partition_columns(self, data: pa.Table, num_rows: int, file: DataFile) -> pa.Table:
        arrays = []
        zeros = pa.array(np.zeros(num_rows, dtype=np.int32))
        for field in self.output_schema:
            if field.name in self._partition_columns:
                value = file.partition_values.get(field.name)
                scalar = None if value is None else partition_value_scalar(value, field.type)
                arrays.append(pa.array([scalar], field.type).take(zeros))
            elif field.name in data.column_names:
                # a file written before its column was widened holds the narrower type
                arrays.append(data.column(field.name).cast(field.type))
            else:
                arrays.append(pa.nulls(num_rows, field.type))
        return pa.Table.from_arrays(arrays, schema=self.output_schema)


_WHOLE_OBJECT_BYTES = 8 * 1024**2


_FETCHES_AHEAD = 8


def _opened_in_order(
    filesystem: pafs.FileSystem, files: Sequence[DataFile]
) -> Iterator[tuple[DataFile, Any]]:
    """Each file, ready for a Parquet reader, in order. A small file on an object store is
    fetched whole in one request, up to 8 of them at once while the task decodes the earlier
    ones: random access would ask for its size, then its footer, then its column chunks, one
    after the other, and on an object store each request costs more than the bytes it saves
    (8 files of 100 KB: 0.18 s by random access, 0.09 s whole, one at a time)."""
    if isinstance(filesystem, pafs.LocalFileSystem):
        for file in files:
            yield file, filesystem.open_input_file(file.path)
        return

    def fetch(file: DataFile) -> Any:
        if file.size_bytes > _WHOLE_OBJECT_BYTES:
            return filesystem.open_input_file(file.path)
        with filesystem.open_input_stream(file.path) as stream:
            return pa.BufferReader(stream.read())

    with ThreadPoolExecutor(max_workers=_FETCHES_AHEAD) as pool:
        pending: deque[tuple[DataFile, Future[Any]]] = deque()
        upcoming = iter(files)
        for file in itertools.islice(upcoming, _FETCHES_AHEAD):
            pending.append((file, pool.submit(fetch, file)))
        while pending:
            file, future = pending.popleft()
            following = next(upcoming, None)
            if following is not None:  # at most 8 small files held at once
                pending.append((following, pool.submit(fetch, following)))
            yield file, future.result()


def _balanced_groups(files: Sequence[DataFile], count: int) -> list[list[DataFile]]:
    """Split files into `count` groups of similar total size (largest first, greedy)."""
    groups: list[list[DataFile]] = [[] for _ in range(count)]
    sizes = [0] * count
    for file in sorted(files, key=lambda f: f.size_bytes, reverse=True):
        smallest = sizes.index(min(sizes))
        groups[smallest].append(file)
        sizes[smallest] += file.size_bytes
    return [group for group in groups if group]


def files_dataset(
    files: Sequence[DataFile],
    *,
    table_schema: pa.Schema,
    partition_columns: Sequence[str],
    columns: Sequence[str] | None,
    table_uri: str,
    storage_options: Mapping[str, str] | None,
    name: str,
    where: str,
) -> ray.data.Dataset:
    """The lazy dataset of exactly `files`: `columns` only (all when None) and the partition
    columns, with the table's types; an empty table when there is no file."""
    from ray_assets._compat import bound_task_retries
    from ray_assets.errors import SchemaMismatchError
    from ray_assets.storage.filesystem import redact_uri
    from ray_assets.storage.staging import max_task_retries

    if columns is not None:
        unknown = [c for c in columns if c not in table_schema.names]
        if unknown:
            raise SchemaMismatchError(
                f"{where}, table {redact_uri(table_uri)}: requested columns {unknown} are not in "
                f"the table (columns: {table_schema.names})."
            )
    datasource = TableFilesDatasource(
        files=files,
        table_schema=table_schema,
        partition_columns=partition_columns,
        columns=columns,
        table_uri=table_uri,
        storage_options=storage_options,
        name=name,
    )
    if not datasource._files:
        return ray.data.from_arrow(datasource.output_schema.empty_table())
    dataset = datasource.dataset()
    bound_task_retries(dataset, max_task_retries())
    return dataset
