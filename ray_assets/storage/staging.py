"""The first phase of every write: run the pipeline into data files and check them.

Both stores write the same way up to their commit. The Ray tasks stream the pipeline into fresh
files (`files_sink`); the driver then checks what they reported (no row outside the run's
partitions, one schema the table accepts) and lets the gate (the asset's checks) decide.
Whatever refuses the write deletes the staged files, which no commit ever referenced; what
passes is a `StagedWrite` for the store's own commit step (a Delta log entry, or Parquet
partition manifests).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ray_assets.errors import PartitionColumnError, SchemaMismatchError, StrayPartitionValuesError
from ray_assets.partition_slice import PartitionSlice, canonical_partition_text
from ray_assets.storage.filesystem import resolve_filesystem
from ray_assets.storage.ray_errors import pipeline_error
from ray_assets.storage.schema_evolution import SchemaEvolution, merge
from ray_assets.storage.staged import StagedWrite
from ray_assets.storage.write_records import new_record, record_write
from ray_assets.storage.write_result import PartitionWriteStats, column_profile

if TYPE_CHECKING:
    import ray.data

    from ray_assets.storage.file_stats import TaskWriteReport
    from ray_assets.storage.files_sink import BlockObserver

Gate = Callable[[StagedWrite], Any]
"""Decides on a staged write before its commit: raises to stop it, or returns a small JSON
record that the commit keeps (and a re-run of the same write id gets back)."""

DEFAULT_MAX_TASK_RETRIES = 3
"""Crashed Ray tasks are retried this often (Ray's default is forever); see `RayResource`."""


def max_task_retries() -> int:
    """How often a crashed Ray task of a write or a read is retried (`RayResource` sets it)."""
    from ray.data.context import DataContext

    return DataContext.get_current().get_config(
        "ray_assets.max_task_retries", DEFAULT_MAX_TASK_RETRIES
    )


def write_app_id(write_id: str, partition_slice: PartitionSlice) -> str:
    """The transaction id of a write: its write id and slice. A re-run of the same run over the
    same partitions finds it (in the Delta log, or in the Parquet manifests)."""
    from ray_assets.storage.delta_commit import MARKER

    return f"{MARKER}-{partition_slice.fingerprint()}-{write_id}"


def check_layout(
    partition_columns: Sequence[str],
    schema: pa.Schema,
    partition_slice: PartitionSlice,
    what: str,
) -> None:
    """Refuse a write whose partitioning does not fit the table's, before any work."""
    if list(partition_columns) != list(partition_slice.columns):
        raise PartitionColumnError(
            f"{what}: the table is partitioned by {list(partition_columns)}, but the asset "
            f"declares partition columns {list(partition_slice.columns)}."
        )
    stored = partition_slice.stored_values(partition_slice.column_types(schema))
    for index, column in enumerate(partition_slice.columns):
        kind = schema.field(column).type
        for value in dict.fromkeys(values[index] for values in stored):
            if canonical_partition_text(value, kind) != value:
                raise PartitionColumnError(
                    f"{what}: partition key value '{value}' cannot be stored exactly in "
                    f"column '{column}' of type {kind}. Nothing was written."
                )


def stage(
    data: ray.data.Dataset,
    partition_slice: PartitionSlice,
    *,
    table_uri: str,
    storage_options: Mapping[str, str],
    expected_schema: pa.Schema | None,
    declared_types: Mapping[str, pa.DataType] | None,
    schema_evolution: SchemaEvolution,
    observer: BlockObserver | None,
    what: str,
    write_id: str,
    app_id: str,
) -> StagedWrite:
    """Execute `data` once into uncommitted files under `table_uri` and check them. The write is
    recorded first (`write_records`), so that maintenance can tell its files from a live
    write's if it dies before its commit; the store forgets it once it commits.

    Raises:
        PipelineFailedError: the pipeline failed.
        StrayPartitionValuesError, SchemaMismatchError, PartitionColumnError: the data does not
            fit the slice or the table; the staged files were deleted.
    """

    from ray_assets._compat import bound_task_retries
    from ray_assets.storage.files_sink import TableFilesSink

    max_retries = max_task_retries()
    _refuse_unstorable_keys(partition_slice, expected_schema, what)
    write_uuid = uuid.uuid4().hex[:16]
    filesystem, root = resolve_filesystem(table_uri, storage_options)
    record_write(filesystem, root, new_record(write_uuid, write_id, app_id))
    sink = TableFilesSink(
        table_uri=table_uri,
        storage_options=storage_options,
        partition_columns=partition_slice.columns,
        partition_slice=partition_slice if partition_slice.is_partitioned else None,
        expected_schema=expected_schema,
        write_uuid=write_uuid,
        declared_types=declared_types,
        schema_evolution=schema_evolution,
        observer=observer,
    )
    bound_task_retries(data, max_retries)
    try:
        data.write_datasink(sink, ray_remote_args={"max_retries": max_retries})
    except Exception as error:  # noqa: BLE001 - re-raised with asset, partitions and cause
        raise pipeline_error(error, what) from error

    files = [stats for report in sink.reports for stats in report.files]
    staged = StagedWrite(
        partition_slice=partition_slice,
        schema=pa.schema([]),
        files=files,
        observations=[report.observations for report in sink.reports],
        table_uri=table_uri,
        storage_options=storage_options,
        write_uuid=write_uuid,
    )
    try:
        _raise_on_stray_values(sink.reports, partition_slice, what)
        schema = _single_schema(sink.reports, expected_schema, what, schema_evolution)
    except BaseException:
        staged.remove_files()
        raise
    return StagedWrite(
        partition_slice=partition_slice,
        schema=schema,
        files=files,
        observations=staged.observations,
        table_uri=table_uri,
        storage_options=storage_options,
        key_of=_key_of(partition_slice, schema),
        write_uuid=write_uuid,
    )


_MAX_NAME_BYTES = 255
"""The longest file or directory name local file systems (ext4, APFS, NTFS) accept."""


def _refuse_unstorable_keys(
    partition_slice: PartitionSlice, schema: pa.Schema | None, what: str
) -> None:
    """Refuse, before any file is written, a key whose partition directory name no file system
    can hold (a very long key): the tasks would otherwise fail one by one, after writing other
    partitions' files."""
    from ray_assets.errors import PartitionKeyError
    from ray_assets.storage.files_sink import partition_directory

    if not partition_slice.is_partitioned:
        return
    types = partition_slice.column_types(schema) if schema is not None else {}
    for values in partition_slice.stored_values(types):
        for column, value in zip(partition_slice.columns, values, strict=True):
            name = partition_directory([column], [value])
            if len(name.encode()) > _MAX_NAME_BYTES:
                raise PartitionKeyError(
                    f"{what}: the partition key for column '{column}' ({value[:40]!r}..., "
                    f"{len(value)} characters) makes a directory name of {len(name.encode())} "
                    f"bytes, over the {_MAX_NAME_BYTES} a file system accepts. Nothing was "
                    "written; use shorter keys."
                )


def run_gate(gate: Gate | None, staged: StagedWrite) -> Any:
    """What the gate decided on `staged` (None without a gate); when it refuses, the staged
    files are deleted first: no commit can ever reference them."""
    if gate is None:
        return None
    try:
        return gate(staged)
    except BaseException:
        staged.remove_files()
        raise


def partition_stats(staged: StagedWrite) -> dict[str, PartitionWriteStats]:
    """Rows, files, bytes and profile of every partition of the write (an empty one too)."""
    if not staged.partition_slice.is_partitioned:
        return {}
    rows: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    by_key: dict[str, list[Any]] = {}
    for stats in staged.files:
        key = staged.key_of_file(stats)
        rows[key] += stats.num_rows
        counts[key] += 1
        sizes[key] += stats.size_bytes
        by_key.setdefault(key, []).append(stats)
    return {
        key: PartitionWriteStats(
            rows=rows[key],
            files=counts[key],
            bytes=sizes[key],
            profile=column_profile(by_key.get(key, []), staged.schema),
        )
        for key in staged.partition_slice.keys or ()
    }


def _key_of(partition_slice: PartitionSlice, schema: pa.Schema) -> dict[tuple[str, ...], str]:
    if not partition_slice.is_partitioned:
        return {}
    stored = partition_slice.stored_values(partition_slice.column_types(schema))
    return dict(zip(stored, partition_slice.keys or (), strict=True))


def _raise_on_stray_values(
    reports: Sequence[TaskWriteReport], partition_slice: PartitionSlice, what: str
) -> None:
    strays: Counter[tuple[str | None, ...]] = Counter()
    for report in reports:
        strays.update(report.stray_counts)
    if not strays:
        return
    shown = ", ".join(
        f"{'|'.join('<null>' if v is None else v for v in values)}: {count} row(s)"
        for values, count in strays.most_common(10)
    )
    more = f" and {len(strays) - 10} more value(s)" if len(strays) > 10 else ""
    raise StrayPartitionValuesError(
        f"{what}: {sum(strays.values())} row(s) have values of partition column(s) "
        f"{list(partition_slice.columns)} outside this run's partitions ({shown}{more}). "
        "Nothing was committed; filter the rows to the run's partitions "
        "(context.partition_keys) or fix the partition column."
    )


def _single_schema(
    reports: Sequence[TaskWriteReport],
    expected: pa.Schema | None,
    what: str,
    schema_evolution: SchemaEvolution = "strict",
) -> pa.Schema:
    """The table's schema after this write: the table's own, evolved by what the tasks wrote
    (under `overwrite`, or for a new table, what the tasks wrote alone)."""
    from ray_assets.storage.arrow_schema import schema_diff

    schemas = [report.schema for report in reports if report.schema is not None]
    if expected is None and not schemas:
        raise SchemaMismatchError(
            f"{what}: the pipeline produced no blocks, so the new table's schema is unknown. "
            "Return a Dataset with at least a schema (even empty) for the first write."
        )
    if expected is None:
        # A new table: the tasks checked their blocks against each other's first, so any
        # difference left is between tasks, and no policy merges those.
        for schema in schemas[1:]:
            diff = schema_diff(schemas[0], schema)
            if diff:
                raise SchemaMismatchError(
                    f"{what}: blocks of the pipeline disagree on the schema:\n" + "\n".join(diff)
                )
        return schemas[0]
    if schema_evolution == "overwrite" and schemas:
        result, rest = schemas[0], schemas[1:]
    else:
        result, rest = expected, schemas
    for schema in rest:
        merged = result if schema.equals(result) else merge(result, schema)
        if merged is None:
            raise SchemaMismatchError(
                f"{what}: blocks of the pipeline disagree on the schema:\n"
                + "\n".join(schema_diff(result, schema))
            )
        result = merged
    return result
