"""`DeltaStore`: atomic, partition-exact writes of a Ray pipeline into one Delta table, and lazy reads.

A write executes the pipeline once: `staging` runs it into data files and checks them (stray
partition values, schema, the asset's checks); then `delta_commit` makes one Delta commit that
replaces exactly the run's partitions, tagged with a transaction identifier so a retried commit
or a re-run of the same run changes nothing. Anything that fails before the commit leaves the
table at its previous version. Files of a refused write are deleted; files of a failed commit
are not (a lost reply over a durable commit would then destroy committed data): they are
invisible to readers, and `ray_assets.maintenance` reclaims them once the write's run is over
and its transaction is not in the table.
Reads list the slice's files from one version of the log (`files_source`).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc

from ray_assets.errors import (
    PartitionColumnError,
    RayAssetsError,
    SchemaMismatchError,
    UnsupportedTableError,
)
from ray_assets.partition_slice import PartitionSlice, partition_text
from ray_assets.storage.delta_commit import (
    GATE_KEY,
    MARKER,
    WRITE_ID_KEY,
    OnConcurrentWrite,
    SliceCommitter,
    commit_version,
    refuse_unknown_policy,
)
from ray_assets.storage.filesystem import (
    normalize_table_uri,
    object_store_options,
    redact_uri,
    resolve_filesystem,
    unreadable_store_error,
)
from ray_assets.storage.schema_evolution import SchemaEvolution
from ray_assets.storage.schema_evolution import refuse_unknown_policy as refuse_unknown_evolution
from ray_assets.storage.staging import (
    Gate,
    check_layout,
    partition_stats,
    run_gate,
    stage,
    write_app_id,
)
from ray_assets.storage.write_result import (
    PartitionWriteStats,
    WriteResult,
    column_profile,
    schema_changes,
)

if TYPE_CHECKING:
    import ray.data
    from deltalake import DeltaTable

    from ray_assets.storage.files_sink import BlockObserver
    from ray_assets.storage.files_source import DataFile

_UNSUPPORTED_READER_FEATURES = {"deletionVectors", "columnMapping"}


class DeltaStore:
    """One Delta table: streaming, atomic, idempotent partition writes and pruned lazy reads.

    `table_uri` is a local path or an object-store URI; `storage_options` are delta-rs storage
    options (also used for the pyarrow filesystem of the Ray tasks). `max_commit_attempts`
    bounds our retries (with jitter) when concurrent writers of other partitions win the race
    more often than delta-rs's own `max_commit_retries` absorbs. `on_concurrent_write` says what
    a write does when another write committed some of the same partitions while it ran:
    `"warn"` replaces them and reports it in `WriteResult.warnings`, `"fail"` raises
    `ConcurrentWriteError` and commits nothing. Either way a partition never holds two writes'
    rows.
    """

    def __init__(
        self,
        table_uri: str,
        *,
        storage_options: Mapping[str, str] | None = None,
        max_commit_attempts: int = 8,
        max_commit_retries: int = 100,
        on_concurrent_write: OnConcurrentWrite = "warn",
    ) -> None:
        self.table_uri = normalize_table_uri(table_uri)
        self.storage_options = object_store_options(self.table_uri, storage_options)
        self.max_commit_attempts = max_commit_attempts
        self.max_commit_retries = max_commit_retries
        self.on_concurrent_write = refuse_unknown_policy(on_concurrent_write)

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
        except OSError as error:  # the store itself failed: no bucket, refused, unreachable
            raise unreadable_store_error(self.table_uri, self.storage_options, error) from None

    def version(self) -> int | None:
        """The latest table version, or None when no table exists yet."""
        table = self.open_table()
        return None if table is None else table.version()

    def schema(self) -> pa.Schema | None:
        """The table's schema, or None when no table exists yet."""
        table = self.open_table()
        return None if table is None else self.table_schema(table)

    def table_schema(self, table: DeltaTable) -> pa.Schema:
        return pa.schema(table.schema().to_arrow())

    # ------------------------------------------------------------------ write
    def write(
        self,
        data: ray.data.Dataset,
        partition_slice: PartitionSlice,
        *,
        write_id: str | None = None,
        declared_types: Mapping[str, pa.DataType] | None = None,
        schema_evolution: SchemaEvolution = "strict",
        observer: BlockObserver | None = None,
        gate: Gate | None = None,
    ) -> WriteResult:
        """Execute `data` once and replace exactly `partition_slice` with its rows, in one commit.

        Args:
            data: the lazy pipeline; it is executed once, streaming, by Ray tasks.
            partition_slice: the partitions this write replaces (and the only ones its rows
                may belong to).
            write_id: names the logical write (a Dagster run id): a second write with the same
                id and slice finds the first commit's transaction identifier and changes
                nothing.
            declared_types: column types to use where the data has none (a column whose values
                are all null), for example from the asset's `dagster/column_schema`.
            schema_evolution: what the write may change in the table's schema
                (`ray_assets.storage.schema_evolution`).
            observer: sees every block the tasks write (the row checks).
            gate: decides on the written files before the commit; when it raises, nothing is
                committed and the written files are deleted.

        Raises:
            StrayPartitionValuesError, SchemaMismatchError, PartitionColumnError: the data does
                not fit the slice or the table; nothing was committed.
            PipelineFailedError: the pipeline failed; nothing was committed.
            ConcurrentWriteError: another write committed some of these partitions while this
                one ran, and `on_concurrent_write="fail"`.
            CommitError: the commit could not be made; the table is at its previous version.
        """
        started = time.perf_counter()
        what = f"{partition_slice.describe()}, table {redact_uri(self.table_uri)}"
        write_id = write_id or uuid.uuid4().hex
        schema_evolution = refuse_unknown_evolution(schema_evolution)
        app_id = write_app_id(write_id, partition_slice)
        table = self.open_table()
        expected_schema = None
        if table is not None:
            self.check_table_layout(table, partition_slice, what)
            expected_schema = self.table_schema(table)
            if table.transaction_version(app_id) is not None:
                return self._already_committed(table, app_id, started)
        committer = SliceCommitter(
            self,
            partition_slice,
            app_id=app_id,
            read_version=None if table is None else table.version(),
            read_schema=expected_schema,
            on_concurrent_write=self.on_concurrent_write,
            what=what,
        )
        staged = stage(
            data,
            partition_slice,
            table_uri=self.table_uri,
            storage_options=self.storage_options,
            expected_schema=expected_schema,
            declared_types=declared_types,
            schema_evolution=schema_evolution,
            observer=observer,
            what=what,
            write_id=write_id,
            app_id=app_id,
        )
        schema, files = staged.schema, list(staged.files)
        changes = []
        if expected_schema is not None and not schema.equals(expected_schema):
            changes = schema_changes(expected_schema, schema)
            if schema_evolution == "overwrite":
                assert table is not None
                try:
                    self._refuse_partial_overwrite(
                        table, partition_slice, expected_schema, schema, what
                    )
                except SchemaMismatchError:
                    staged.remove_files()
                    raise
        partitions = partition_stats(staged)
        gate_record = run_gate(gate, staged)
        custom = {
            f"{MARKER}.app_id": app_id,
            WRITE_ID_KEY: write_id,
            f"{MARKER}.slice": partition_slice.describe(),
            f"{MARKER}.rows": sum(s.num_rows for s in files),
            f"{MARKER}.partitions": {
                key: [p.rows, p.files, p.bytes] for key, p in partitions.items()
            },
        }
        if gate_record is not None:
            custom[GATE_KEY] = gate_record
        outcome = committer.commit(files, schema, custom)
        staged.forget()  # committed: maintenance must leave its files to vacuum
        return WriteResult(
            table_uri=redact_uri(self.table_uri),
            table_version=outcome.table_version,
            committed=outcome.committed,
            rows_written=sum(s.num_rows for s in files),
            files_written=len(files),
            bytes_written=sum(s.size_bytes for s in files),
            partitions=partitions,
            schema=schema,
            table_row_count=self._row_count(outcome.table_version),
            duration_s=time.perf_counter() - started,
            stats_by_file=files,
            concurrent_commits=outcome.concurrent,
            emptied_partitions=outcome.emptied,
            commit_attempts=outcome.attempts,
            gate_record=gate_record,
            schema_changes=changes,
            profile=column_profile(files, schema),
        )

    def _refuse_partial_overwrite(
        self,
        table: DeltaTable,
        partition_slice: PartitionSlice,
        before: pa.Schema,
        after: pa.Schema,
        what: str,
    ) -> None:
        """A schema overwrite must replace every row of the table: older files in the old
        schema would otherwise stay beside the new ones."""
        columns = partition_slice.columns
        changed = [
            c
            for c in columns
            if c not in after.names or after.field(c).type != before.field(c).type
        ]
        if changed:
            raise SchemaMismatchError(
                f"{what}: schema_evolution='overwrite' cannot change partition column(s) "
                f"{changed}; write the data to a new asset (table) instead. Nothing was committed."
            )
        if not partition_slice.is_partitioned:
            return
        wanted = set(partition_slice.stored_values(partition_slice.column_types(before)))
        outside: Counter[tuple[str, ...]] = Counter()
        for data_file in self._files_of(
            table, PartitionSlice.unpartitioned(partition_slice.asset_key)
        ):
            values = tuple(data_file.partition_values[c] or "" for c in columns)
            if values not in wanted:
                outside[values] += data_file.num_rows or 0
        if outside:
            shown = ", ".join("|".join(v) for v in list(outside)[:5])
            raise SchemaMismatchError(
                f"{what}: schema_evolution='overwrite' replaces the table's schema, so the write "
                f"must replace the whole table, but {len(outside)} partition(s) outside it hold "
                f"{sum(outside.values())} row(s) in the old schema ({shown}"
                f"{', ...' if len(outside) > 5 else ''}). Nothing was committed. Materialize "
                "every partition in one run (a single-run backfill of the whole range), or "
                "write the new schema to a new asset.\n" + "\n".join(schema_changes(before, after))
            )

    def check_table_layout(
        self, table: DeltaTable, partition_slice: PartitionSlice, what: str
    ) -> None:
        check_layout(
            list(table.metadata().partition_columns),
            self.table_schema(table),
            partition_slice,
            what,
        )

    def _already_committed(self, table: DeltaTable, app_id: str, started: float) -> WriteResult:
        version = commit_version(self, table, app_id)
        info = next((i for i in table.history() if i.get(f"{MARKER}.app_id") == app_id), {})
        partitions = {
            key: PartitionWriteStats(*values)
            for key, values in (info.get(f"{MARKER}.partitions") or {}).items()
        }
        return WriteResult(
            table_uri=redact_uri(self.table_uri),
            table_version=version,
            committed=False,
            rows_written=int(info.get(f"{MARKER}.rows", 0)),
            files_written=sum(p.files for p in partitions.values()),
            bytes_written=sum(p.bytes for p in partitions.values()),
            partitions=partitions,
            schema=self.table_schema(table),
            table_row_count=self._row_count(table.version()),
            duration_s=time.perf_counter() - started,
            gate_record=info.get(GATE_KEY),
        )

    def _row_count(self, version: int) -> int:
        table = self.open_table(version)
        if table is None:
            return 0
        actions = pa.table(table.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return 0
        return int(pc.sum(actions.column("num_records")).as_py() or 0)

    def rows_by_partition(
        self, table: DeltaTable, partition_slice: PartitionSlice
    ) -> dict[tuple[str, ...], int]:
        """Rows the table holds in each partition of the slice (by stored values; `()` when whole)."""
        rows: Counter[tuple[str, ...]] = Counter()
        for data_file in self._files_of(table, partition_slice):
            values = tuple(data_file.partition_values[c] for c in partition_slice.columns)
            rows[values] += data_file.num_rows or 0
        return dict(rows)

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
        from ray_assets.storage.files_source import files_dataset

        table = self._readable_table(partition_slice, version)
        return files_dataset(
            self._files_of(table, partition_slice),
            table_schema=self.table_schema(table),
            partition_columns=list(table.metadata().partition_columns),
            columns=columns,
            table_uri=self.table_uri,
            storage_options=self.storage_options,
            name="DeltaTable",
            where=partition_slice.describe(),
        )

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
        from ray_assets.storage.files_source import DataFile

        _, root = resolve_filesystem(self.table_uri, self.storage_options)
        actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        partition_columns = list(table.metadata().partition_columns)
        wanted = None
        if partition_slice.is_partitioned:
            types = partition_slice.column_types(self.table_schema(table))
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
