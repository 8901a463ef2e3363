"""`DeltaStore`: atomic, partition-exact writes of a Ray pipeline into one Delta table, and lazy reads.

A write executes the pipeline once. Ray tasks write the data files (`DeltaFilesSink`) and
return their statistics; the driver checks them (stray partition values, schema) and then
makes one Delta commit that replaces exactly the run's partitions, tagged with a transaction
identifier so a retried commit or a re-run of the same run changes nothing. Anything that
fails before the commit leaves the table at its previous version; the uncommitted files are
invisible to readers and a `vacuum(full=True)` after the retention window reclaims them (we
never delete files on a commit error: a lost reply over a durable commit would then destroy
committed data).
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc

from ray_assets.errors import (
    CommitError,
    PartitionColumnError,
    PipelineFailedError,
    RayAssetsError,
    SchemaMismatchError,
    StrayPartitionValuesError,
    UnsupportedTableError,
)
from ray_assets.partition_slice import PartitionSlice, partition_text, partition_value_scalar
from ray_assets.storage.filesystem import normalize_table_uri, redact_uri, resolve_filesystem

if TYPE_CHECKING:
    import ray.data
    from deltalake import DeltaTable

    from ray_assets.storage.delta_source import DataFile
    from ray_assets.storage.file_stats import FileStats

DEFAULT_MAX_TASK_RETRIES = 3
"""Crashed Ray tasks are retried this often (Ray's default is forever); see `RayResource`."""

_MARKER = "ray_assets"
_COMMIT_SEARCH_DEPTH = 1000
"""How far back to look for a commit of ours: concurrent writers add a few versions, not more."""
_UNSUPPORTED_READER_FEATURES = {"deletionVectors", "columnMapping"}


@dataclass(frozen=True)
class PartitionWriteStats:
    """What one partition holds after a write."""

    rows: int
    files: int
    bytes: int


@dataclass(frozen=True)
class WriteResult:
    """The outcome of `DeltaStore.write`: the commit and the statistics the tasks reported."""

    table_uri: str
    table_version: int
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

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.duration_s if self.duration_s > 0 else 0.0


class DeltaStore:
    """One Delta table: streaming, atomic, idempotent partition writes and pruned lazy reads.

    `table_uri` is a local path or an object-store URI; `storage_options` are delta-rs storage
    options (also used for the pyarrow filesystem of the Ray tasks). `max_commit_attempts`
    bounds our retries (with jitter) when concurrent writers of other partitions win the race
    more often than delta-rs's own `max_commit_retries` absorbs.
    """

    def __init__(
        self,
        table_uri: str,
        *,
        storage_options: Mapping[str, str] | None = None,
        max_commit_attempts: int = 8,
        max_commit_retries: int = 100,
    ) -> None:
        self.table_uri = normalize_table_uri(table_uri)
        self.storage_options = dict(storage_options or {})
        self.max_commit_attempts = max_commit_attempts
        self.max_commit_retries = max_commit_retries

    # ------------------------------------------------------------------ table state
    def open_table(self, version: int | None = None) -> DeltaTable | None:
        """The table at `version` (latest when None), or None when no table exists yet."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(
                self.table_uri, version=version, storage_options=self.storage_options or None
            )
        except TableNotFoundError:
            return None

    def version(self) -> int | None:
        """The latest table version, or None when no table exists yet."""
        table = self.open_table()
        return None if table is None else table.version()

    def table_schema(self, table: DeltaTable) -> pa.Schema:
        return pa.schema(table.schema().to_arrow())

    # ------------------------------------------------------------------ write
    def write(
        self,
        data: ray.data.Dataset,
        partition_slice: PartitionSlice,
        *,
        write_id: str | None = None,
    ) -> WriteResult:
        """Execute `data` once and replace exactly `partition_slice` with its rows, in one commit.

        `write_id` names the logical write (a Dagster run id): a second write with the same id
        and slice finds the first commit's transaction identifier and changes nothing.
        """
        from ray.data.context import DataContext

        from ray_assets._compat import bound_task_retries
        from ray_assets.storage.delta_sink import DeltaFilesSink

        started = time.perf_counter()
        what = f"{partition_slice.describe()}, table {redact_uri(self.table_uri)}"
        app_id = _app_id(write_id or uuid.uuid4().hex, partition_slice)
        table = self.open_table()
        expected_schema = None
        if table is not None:
            self._check_table_layout(table, partition_slice, what)
            expected_schema = self.table_schema(table)
            if table.transaction_version(app_id) is not None:
                return self._already_committed(table, app_id, started)

        max_retries = DataContext.get_current().get_config(
            "ray_assets.max_task_retries", DEFAULT_MAX_TASK_RETRIES
        )
        sink = DeltaFilesSink(
            table_uri=self.table_uri,
            storage_options=self.storage_options,
            partition_columns=partition_slice.columns,
            partition_slice=partition_slice if partition_slice.is_partitioned else None,
            expected_schema=expected_schema,
            write_uuid=uuid.uuid4().hex[:16],
        )
        bound_task_retries(data, max_retries)
        try:
            data.write_datasink(sink, ray_remote_args={"max_retries": max_retries})
        except Exception as error:  # noqa: BLE001 - re-raised with asset, partitions and cause
            raise _pipeline_error(error, what) from error

        files = [stats for report in sink.reports for stats in report.files]
        _raise_on_stray_values(sink.reports, partition_slice, what)
        schema = _single_schema(sink.reports, expected_schema, what)
        partitions = _partition_stats(files, partition_slice, schema)
        custom = {
            f"{_MARKER}.app_id": app_id,
            f"{_MARKER}.slice": partition_slice.describe(),
            f"{_MARKER}.rows": sum(s.num_rows for s in files),
            f"{_MARKER}.partitions": {
                key: [p.rows, p.files, p.bytes] for key, p in partitions.items()
            },
        }
        version, committed = self._commit(files, schema, partition_slice, app_id, custom, what)
        return WriteResult(
            table_uri=redact_uri(self.table_uri),
            table_version=version,
            committed=committed,
            rows_written=sum(s.num_rows for s in files),
            files_written=len(files),
            bytes_written=sum(s.size_bytes for s in files),
            partitions=partitions,
            schema=schema,
            table_row_count=self._row_count(version),
            duration_s=time.perf_counter() - started,
            stats_by_file=files,
        )

    def _check_table_layout(
        self, table: DeltaTable, partition_slice: PartitionSlice, what: str
    ) -> None:
        partition_columns = list(table.metadata().partition_columns)
        if partition_columns != list(partition_slice.columns):
            raise PartitionColumnError(
                f"{what}: the table is partitioned by {partition_columns}, but the asset declares "
                f"partition columns {list(partition_slice.columns)}."
            )
        schema = self.table_schema(table)
        stored = partition_slice.stored_values(_column_types(schema, partition_slice))
        for index, column in enumerate(partition_slice.columns):
            kind = schema.field(column).type
            for value in dict.fromkeys(values[index] for values in stored):
                if not _fits_exactly(value, kind):
                    raise PartitionColumnError(
                        f"{what}: partition key value '{value}' cannot be stored exactly in "
                        f"column '{column}' of type {kind}. Nothing was written."
                    )

    def _commit(
        self,
        files: Sequence[FileStats],
        schema: pa.Schema,
        partition_slice: PartitionSlice,
        app_id: str,
        custom: dict[str, Any],
        what: str,
    ) -> tuple[int, bool]:
        from deltalake import CommitProperties, Schema, Transaction
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import AddAction, create_table_with_add_actions

        from ray_assets.storage.delta_sink import modification_time_ms

        now = modification_time_ms()
        adds = [
            AddAction(
                path=stats.path,
                size=stats.size_bytes,
                partition_values=stats.partition_values,
                modification_time=now,
                data_change=True,
                stats=stats.delta_stats_json(),
            )
            for stats in files
        ]
        filters = partition_slice.delta_partition_filters(_column_types(schema, partition_slice))
        last_error: Exception | None = None
        for attempt in range(1, self.max_commit_attempts + 1):
            table = self.open_table()
            if table is not None and table.transaction_version(app_id) is not None:
                return self._commit_version(table, app_id), attempt > 1
            properties = CommitProperties(
                custom_metadata=custom,
                max_commit_retries=self.max_commit_retries,
                app_transactions=[Transaction(app_id, 0)],
            )
            try:
                if table is None:
                    create_table_with_add_actions(
                        self.table_uri,
                        Schema.from_arrow(schema),
                        adds,
                        mode="error",
                        partition_by=list(partition_slice.columns) or None,
                        storage_options=self.storage_options or None,
                        commit_properties=properties,
                    )
                else:
                    table.create_write_transaction(
                        adds,
                        mode="overwrite",
                        schema=table.schema(),
                        partition_by=list(partition_slice.columns) or None,
                        partition_filters=filters,
                        commit_properties=properties,
                    )
                committed = self.open_table()
                assert committed is not None
                return self._commit_version(committed, app_id), True
            except CommitFailedError as error:
                last_error = error
            except Exception as error:  # noqa: BLE001 - the outcome may be ambiguous; re-check
                last_error = error
                current = self.open_table()
                if current is not None and current.transaction_version(app_id) is not None:
                    return self._commit_version(current, app_id), True
                if table is not None or current is None:
                    break  # not a lost race: a real error
            time.sleep(random.uniform(0, min(5.0, 0.1 * 2**attempt)))
        raise CommitError(
            f"{what}: the Delta commit failed after {attempt} attempt(s); the table is still at "
            f"its previous version. Cause: {_short(last_error)}"
        ) from last_error

    def _commit_version(self, table: DeltaTable, app_id: str) -> int:
        """The table version whose commit carries `app_id`'s transaction.

        Read from the commit files themselves, newest first: `DeltaTable.history()` numbers its
        entries from the latest version in storage rather than the loaded one, so with a
        concurrent writer it can be off by one (observed: our version 1 reported as 0).
        """
        import json

        filesystem, root = resolve_filesystem(self.table_uri, self.storage_options)
        newest = table.version()
        for version in range(newest, max(-1, newest - _COMMIT_SEARCH_DEPTH), -1):
            try:
                with filesystem.open_input_stream(f"{root}/_delta_log/{version:020d}.json") as f:
                    lines = f.read().decode().splitlines()
            except FileNotFoundError:
                break  # cleaned up by log retention: older than anything we look for
            for line in lines:
                if '"txn"' in line and json.loads(line).get("txn", {}).get("appId") == app_id:
                    return version
        return newest

    def _already_committed(self, table: DeltaTable, app_id: str, started: float) -> WriteResult:
        version = self._commit_version(table, app_id)
        info = next((i for i in table.history() if i.get(f"{_MARKER}.app_id") == app_id), {})
        partitions = {
            key: PartitionWriteStats(*values)
            for key, values in (info.get(f"{_MARKER}.partitions") or {}).items()
        }
        return WriteResult(
            table_uri=redact_uri(self.table_uri),
            table_version=version,
            committed=False,
            rows_written=int(info.get(f"{_MARKER}.rows", 0)),
            files_written=sum(p.files for p in partitions.values()),
            bytes_written=sum(p.bytes for p in partitions.values()),
            partitions=partitions,
            schema=self.table_schema(table),
            table_row_count=self._row_count(table.version()),
            duration_s=time.perf_counter() - started,
        )

    def _row_count(self, version: int) -> int:
        table = self.open_table(version)
        if table is None:
            return 0
        actions = pa.table(table.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return 0
        return int(pc.sum(actions.column("num_records")).as_py() or 0)

    # ------------------------------------------------------------------ read
    def data_files(
        self, partition_slice: PartitionSlice, version: int | None = None
    ) -> list[DataFile]:
        """The data files of `partition_slice` at `version` (latest when None)."""
        table = self._readable_table(partition_slice, version)
        return self._files_of(table, partition_slice)

    def read(
        self,
        partition_slice: PartitionSlice,
        columns: Sequence[str] | None = None,
        *,
        version: int | None = None,
    ) -> ray.data.Dataset:
        """A lazy Dataset of exactly the slice's rows at one table version.

        Only the slice's files are read (partition pruning) and only `columns` (projection);
        the partition columns are always present, with the table's types.
        """
        import ray.data
        from ray.data.context import DataContext

        from ray_assets._compat import bound_task_retries
        from ray_assets.storage.delta_source import DeltaFilesDatasource

        table = self._readable_table(partition_slice, version)
        schema = self.table_schema(table)
        if columns is not None:
            unknown = [c for c in columns if c not in schema.names]
            if unknown:
                raise SchemaMismatchError(
                    f"{partition_slice.describe()}, table {redact_uri(self.table_uri)}: requested "
                    f"columns {unknown} are not in the table (columns: {schema.names})."
                )
        datasource = DeltaFilesDatasource(
            files=self._files_of(table, partition_slice),
            table_schema=schema,
            partition_columns=list(table.metadata().partition_columns),
            columns=columns,
            table_uri=self.table_uri,
            storage_options=self.storage_options,
        )
        if datasource.estimate_inmemory_data_size() == 0 and not datasource._files:
            return ray.data.from_arrow(datasource.output_schema.empty_table())
        max_retries = DataContext.get_current().get_config(
            "ray_assets.max_task_retries", DEFAULT_MAX_TASK_RETRIES
        )
        dataset = ray.data.read_datasource(datasource)
        bound_task_retries(dataset, max_retries)
        return dataset

    def _readable_table(self, partition_slice: PartitionSlice, version: int | None) -> DeltaTable:
        table = self.open_table(version)
        where = f"{partition_slice.describe()}, table {redact_uri(self.table_uri)}"
        if table is None:
            raise RayAssetsError(
                f"{where}: no Delta table exists there yet. Materialize the asset first."
            )
        protocol = table.protocol()
        features = set(protocol.reader_features or [])
        if protocol.min_reader_version == 2 or features & _UNSUPPORTED_READER_FEATURES:
            raise UnsupportedTableError(
                f"{where}: the table uses reader features {sorted(features) or ['columnMapping']} "
                "(protocol reader version "
                f"{protocol.min_reader_version}), which ray_assets does not read yet."
            )
        partition_columns = list(table.metadata().partition_columns)
        if partition_slice.is_partitioned and partition_columns != list(partition_slice.columns):
            raise PartitionColumnError(
                f"{where}: the table is partitioned by {partition_columns}, but the asset declares "
                f"partition columns {list(partition_slice.columns)}."
            )
        return table

    def _files_of(self, table: DeltaTable, partition_slice: PartitionSlice) -> list[DataFile]:
        from ray_assets.storage.delta_source import DataFile

        _, root = resolve_filesystem(self.table_uri, self.storage_options)
        actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        partition_columns = list(table.metadata().partition_columns)
        wanted = None
        if partition_slice.is_partitioned:
            types = _column_types(self.table_schema(table), partition_slice)
            wanted = set(partition_slice.stored_values(types))
        files = []
        for action in actions:
            values = {
                column: partition_text(action.get(f"partition.{column}"))
                for column in partition_columns
            }
            if (
                wanted is not None
                and tuple(values[c] for c in partition_slice.columns) not in wanted
            ):
                continue
            path = unquote(action["path"])
            files.append(
                DataFile(
                    path=path if "://" in path or path.startswith("/") else f"{root}/{path}",
                    partition_values=values,
                    num_rows=action.get("num_records"),
                    size_bytes=int(action["size_bytes"]),
                )
            )
        return files


def _app_id(write_id: str, partition_slice: PartitionSlice) -> str:
    return f"{_MARKER}-{partition_slice.fingerprint()}-{write_id}"


def _column_types(schema: pa.Schema, partition_slice: PartitionSlice) -> dict[str, pa.DataType]:
    return {c: schema.field(c).type for c in partition_slice.columns if c in schema.names}


def _fits_exactly(value: str, kind: pa.DataType) -> bool:
    try:
        scalar = partition_value_scalar(value, kind)
    except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return partition_text(scalar) == value


def _partition_stats(
    files: Sequence[FileStats], partition_slice: PartitionSlice, schema: pa.Schema
) -> dict[str, PartitionWriteStats]:
    if not partition_slice.is_partitioned:
        return {}
    stored = partition_slice.stored_values(_column_types(schema, partition_slice))
    key_of = dict(zip(stored, partition_slice.keys or (), strict=True))
    rows: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for stats in files:
        key = key_of[tuple(stats.partition_values[c] for c in partition_slice.columns)]
        rows[key] += stats.num_rows
        counts[key] += 1
        sizes[key] += stats.size_bytes
    return {
        key: PartitionWriteStats(rows=rows[key], files=counts[key], bytes=sizes[key])
        for key in partition_slice.keys or ()
    }


def _raise_on_stray_values(
    reports: Sequence[Any], partition_slice: PartitionSlice, what: str
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


def _single_schema(reports: Sequence[Any], expected: pa.Schema | None, what: str) -> pa.Schema:
    from ray_assets.storage.arrow_schema import schema_diff

    schemas = [report.schema for report in reports if report.schema is not None]
    if expected is not None:
        return expected
    if not schemas:
        raise SchemaMismatchError(
            f"{what}: the pipeline produced no blocks, so the new table's schema is unknown. "
            "Return a Dataset with at least a schema (even empty) for the first write."
        )
    for schema in schemas[1:]:
        diff = schema_diff(schemas[0], schema)
        if diff:
            raise SchemaMismatchError(
                f"{what}: blocks of the pipeline disagree on the schema:\n" + "\n".join(diff)
            )
    return schemas[0]


def _pipeline_error(error: Exception, what: str) -> RayAssetsError:
    ours = _find_cause(error, RayAssetsError)
    if ours is not None:
        return type(ours)(f"{what}: {ours}. Nothing was committed.")
    return PipelineFailedError(
        f"{what}: the Ray pipeline failed, nothing was committed and the table is at its "
        f"previous version. Cause: {_short(error)}"
    )


def _find_cause(error: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """The innermost exception of type `kind` in a (Ray-wrapped) chain.

    Ray re-raises a task's exception as `RayTaskError(<type>)`, an instance of the original
    type whose text is a traceback; its `cause` attribute is the original, with its own text.
    """
    found = None
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, kind):
            found = error
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return found


_EXCEPTION_LINE = re.compile(
    r"^(?!ray\.)([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.*)$"
)
_FRAME_LINE = re.compile(r'^\s*File "(.+)", line (\d+), in (.+)$')


def _short(error: BaseException | None) -> str:
    """The root cause of a (Ray-wrapped) exception as one readable line.

    Ray keeps a task's original exception only as traceback text inside `RayTaskError`; the
    first exception line of that text is the root cause, and the frame above it says where.
    """
    if error is None:
        return "unknown"
    lines = str(error).splitlines()
    frame = None
    for line in lines:
        match = _FRAME_LINE.match(line)
        if match:
            frame = match
            continue
        match = _EXCEPTION_LINE.match(line.strip())
        if match:
            where = f" (in {frame.group(3)}, {frame.group(1)}:{frame.group(2)})" if frame else ""
            return f"{match.group(1)}: {match.group(2)}{where}"[:2000]
    text = [line for line in lines if line.strip()]
    message = f"{type(error).__name__}: {text[0] if text else ''}"
    if "made no progress" in message:
        message += (
            " A stage may ask for more CPUs or GPUs than the cluster has, or an actor pool may "
            "hold every CPU so the read stage never runs; if the pipeline is legitimately this "
            "slow, raise RayResource.no_progress_timeout_s."
        )
    return message[:2000]
