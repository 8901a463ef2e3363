"""Partition-scoped replace in BigQuery: one load job per partition, to its decorator.

The rows stream into one Parquet file per partition of the slice (rows outside it are refused
before any job starts). Each partition is then replaced by a load job to `table$20240102` with
`WRITE_TRUNCATE`: BigQuery swaps that partition's rows atomically, and a job that fails leaves
it as it was. A partition of the slice without rows is replaced by an empty load, so a rerun
never keeps stale rows. The table is never truncated nor dropped for a partitioned write; it is
created, partitioned by the slice's column, by the first load when it is missing. A range of
partitions is one job per partition: each is atomic, the range as a whole is not, and the error
of a failed job says which partitions were already replaced (a rerun replaces them all again).
An unpartitioned write is one `WRITE_TRUNCATE` load of the whole table: that is its slice.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_assets.connectors.slices import RememberedErrors, checked_rows
from ray_assets.errors import PartitionColumnError, WarehouseError

Granularity = Literal["HOUR", "DAY", "MONTH", "YEAR"]
_DECORATOR_FORMATS = {"HOUR": "%Y%m%d%H", "DAY": "%Y%m%d", "MONTH": "%Y%m", "YEAR": "%Y"}


def decorator(value: Any, granularity: Granularity) -> str:
    """The partition decorator (`20240102`) of a partition column's value."""
    if not isinstance(value, dt.date):
        raise TypeError(f"a {type(value).__name__} value")
    return value.strftime(_DECORATOR_FORMATS[granularity])


def replace_partitions(
    client: Any,
    table: str,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    slice_keys: Sequence[Mapping[str, Any]] | None,
    granularity: Granularity,
    what: str,
    retry: Any = None,
) -> int:
    """Replace each partition of `slice_keys` (the whole table when None); the rows written."""
    column = _partition_column(slice_keys, schema, what) if slice_keys is not None else None
    targets = (
        {key[column]: decorator(key[column], granularity) for key in slice_keys}
        if column is not None
        else {None: None}
    )
    checked = checked_rows(batches, slice_keys, what) if slice_keys is not None else batches
    source = RememberedErrors(checked)
    with tempfile.TemporaryDirectory(prefix="ray-assets-bigquery-") as folder:
        files = {
            value: Path(folder) / f"{suffix or 'table'}.parquet"
            for value, suffix in targets.items()
        }
        rows = source.reraise(lambda: _split(source, schema, column, files))
        done: list[str] = []
        for value, path in files.items():
            destination = f"{table}${targets[value]}" if column is not None else table
            try:
                _load(client, path, destination, column, granularity, retry)
            except Exception as error:
                from ray_assets.storage.ray_errors import describe_cause

                replaced = f"partitions {done} were replaced" if done else "nothing was written"
                raise WarehouseError(
                    f"{what}: the load job of {destination} failed: {describe_cause(error)}; "
                    f"{replaced}, the others are as they were"
                ) from None
            done.append(targets[value] or table)
    return rows


def _partition_column(slice_keys: Sequence[Mapping[str, Any]], schema: pa.Schema, what: str) -> str:
    columns = list(slice_keys[0]) if slice_keys else []
    if len(columns) != 1:
        raise PartitionColumnError(
            f"{what}: BigQuery partitions a table by one column; this slice has {columns}"
        )
    kind = schema.field(columns[0]).type
    if not (pa.types.is_date(kind) or pa.types.is_timestamp(kind)):
        raise PartitionColumnError(
            f"{what}: BigQuery replaces partitions by their decorator, which needs a DATE, "
            f"DATETIME or TIMESTAMP partition column; {columns[0]!r} is {kind}: cast it"
        )
    return columns[0]


def _split(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    column: str | None,
    files: Mapping[Any, Path],
) -> int:
    """Write each partition's rows to its file (an empty file for one with none)."""
    writers = {
        value: pq.ParquetWriter(path, schema, coerce_timestamps="us")
        for value, path in files.items()
    }
    rows = 0
    try:
        for batch in batches:
            rows += batch.num_rows
            if column is None:
                writers[None].write_batch(batch)
                continue
            values = batch.column(column)
            for value in pc.unique(values).to_pylist():
                writers[value].write_batch(
                    batch.filter(pc.equal(values, pa.scalar(value, values.type)))
                )
    finally:
        for writer in writers.values():
            writer.close()
    return rows


def _load(
    client: Any, path: Path, destination: str, column: str | None, granularity: str, retry: Any
) -> None:
    from google.cloud import bigquery

    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
    )
    if column is not None:
        config.time_partitioning = bigquery.TimePartitioning(type_=granularity, field=column)
    with path.open("rb") as data:
        # with its size, a small file goes in one multipart request, a large one resumable
        job = client.load_table_from_file(
            data, destination, job_config=config, size=path.stat().st_size
        )
    job.result(retry=retry) if retry is not None else job.result()
