"""`ParquetStore`: plain Hive-partitioned Parquet, written atomically partition by partition.

For users who want files any engine reads (the `write_parquet` habit) and still need what
`DeltaStore` promises: a write runs the pipeline once into fresh files (`staging`, shared with
the Delta store), then publishes each of its partitions by replacing that partition's manifest
in one put (`parquet_manifest`). Live files are never overwritten in place; readers that go
through the manifests (this store, `ParquetIOManager`) see a partition's old files or its new
ones; a re-run of the same write id finds its manifests and changes nothing; files that no
manifest names any more are reclaimed by `cleanup`, never by the write.

What a Parquet table cannot promise, unlike Delta: a multi-partition write becomes visible
partition by partition, not in one instant; and an engine that lists the directories itself
(not the manifests) also sees replaced files until `cleanup` removes them.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs

from ray_assets.errors import (
    ConcurrentWriteError,
    PartitionColumnError,
    RayAssetsError,
    SchemaMismatchError,
)
from ray_assets.partition_slice import PartitionSlice
from ray_assets.storage.delta_commit import ConcurrentCommit, refuse_unknown_policy
from ray_assets.storage.filesystem import (
    normalize_table_uri,
    object_store_options,
    redact_uri,
    resolve_filesystem,
    unreadable_store_error,
)
from ray_assets.storage.parquet_manifest import (
    META_DIR,
    ManifestFile,
    ManifestLog,
    PartitionManifest,
    TableMeta,
    replaced_files,
)
from ray_assets.storage.schema_evolution import SchemaEvolution, merge
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

    from ray_assets.storage.delta_commit import OnConcurrentWrite
    from ray_assets.storage.files_sink import BlockObserver
    from ray_assets.storage.files_source import DataFile
    from ray_assets.storage.staged import StagedWrite

DEFAULT_RETENTION = dt.timedelta(hours=1)
MIN_RETENTION = dt.timedelta(minutes=10)
"""`cleanup` refuses a shorter window: a running write's files are named by no manifest until it
publishes, and a reader may still be reading files a new manifest has just replaced."""
_DATA_FILE = re.compile(r"(^|/)part-[0-9a-f]{16}-\d{5}-\d{5}\.parquet$")
"""The data files this store writes (`files_sink` names them): the only ones `cleanup` removes."""


@dataclass(frozen=True)
class CleanupResult:
    """What `ParquetStore.cleanup` did."""

    removed_files: int
    removed_bytes: int
    kept_recent: int
    """Unreferenced files still inside the retention window (a write may be running)."""
    removed_paths: list[str]


class ParquetStore:
    """One Hive-partitioned Parquet table with per-partition manifests.

    `table_uri` is a local path or an object-store URI; `storage_options` are the same options
    `DeltaStore` takes (they make the pyarrow filesystem of the driver and the Ray tasks).
    `on_concurrent_write` says what a write does when another write published some of its
    partitions while it ran: `"warn"` replaces them and says so, `"fail"` raises
    `ConcurrentWriteError` and publishes nothing. A partition never holds two writes' files.
    """

    def __init__(
        self,
        table_uri: str,
        *,
        storage_options: Mapping[str, str] | None = None,
        on_concurrent_write: OnConcurrentWrite = "warn",
    ) -> None:
        self.table_uri = normalize_table_uri(table_uri)
        self.storage_options = object_store_options(self.table_uri, storage_options)
        self.on_concurrent_write = refuse_unknown_policy(on_concurrent_write)

    # ------------------------------------------------------------------ table state
    def _log(self) -> ManifestLog:
        filesystem, root = resolve_filesystem(self.table_uri, self.storage_options)
        return ManifestLog(filesystem, root)

    def _table_meta(self, log: ManifestLog) -> TableMeta | None:
        try:
            return log.read_table()
        except OSError as error:  # the store itself failed: no bucket, refused, unreachable
            raise unreadable_store_error(self.table_uri, self.storage_options, error) from None

    def schema(self) -> pa.Schema | None:
        """The table's schema, or None when no table exists yet."""
        meta = self._table_meta(self._log())
        return None if meta is None else meta.schema

    def manifests(self, partition_slice: PartitionSlice | None = None) -> list[PartitionManifest]:
        """The live manifests of the slice's partitions (of every partition when None)."""
        log = self._log()
        meta = self._table_meta(log)
        if meta is None:
            return []
        if partition_slice is None or not partition_slice.is_partitioned:
            return log.read_all()
        values = partition_slice.stored_values(partition_slice.column_types(meta.schema))
        found = log.read(meta.partition_columns, values)
        return [manifest for manifest in found.values() if manifest is not None]

    def row_count(self) -> int:
        return sum(manifest.rows for manifest in self.manifests())

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
        """Execute `data` once and replace exactly `partition_slice` with its rows, publishing
        each partition in one put. The arguments and errors are `DeltaStore.write`'s."""
        started = time.perf_counter()
        what = f"{partition_slice.describe()}, table {redact_uri(self.table_uri)}"
        write_id = write_id or uuid.uuid4().hex
        schema_evolution = refuse_unknown_evolution(schema_evolution)
        app_id = write_app_id(write_id, partition_slice)
        log = self._log()
        meta = self._table_meta(log)
        before: dict[tuple[str, ...], PartitionManifest | None] = {}
        if meta is not None:
            check_layout(meta.partition_columns, meta.schema, partition_slice, what)
            before = log.read(meta.partition_columns, self._stored_values(partition_slice, meta))
            if before and all(m is not None and m.app_id == app_id for m in before.values()):
                return self._already_committed(partition_slice, before, meta, started)
        staged = stage(
            data,
            partition_slice,
            table_uri=self.table_uri,
            storage_options=self.storage_options,
            expected_schema=None if meta is None else meta.schema,
            declared_types=declared_types,
            schema_evolution=schema_evolution,
            observer=observer,
            what=what,
            write_id=write_id,
            app_id=app_id,
        )
        changes: list[str] = []
        if meta is not None and not staged.schema.equals(meta.schema):
            changes = schema_changes(meta.schema, staged.schema)
            if schema_evolution == "overwrite":
                self._refuse_partial_overwrite(log, meta, staged, what)
        partitions = partition_stats(staged)
        gate_record = run_gate(gate, staged)
        try:
            concurrent, versions, emptied = self._publish(
                log, staged, meta, before, app_id, write_id, gate_record, what
            )
        except (ConcurrentWriteError, SchemaMismatchError):
            staged.remove_files()
            raise
        staged.forget()
        files = list(staged.files)
        return WriteResult(
            table_uri=redact_uri(self.table_uri),
            table_version=max(versions),
            committed=True,
            rows_written=sum(s.num_rows for s in files),
            files_written=len(files),
            bytes_written=sum(s.size_bytes for s in files),
            partitions=partitions,
            schema=staged.schema,
            table_row_count=sum(m.rows for m in log.read_all()),
            duration_s=time.perf_counter() - started,
            stats_by_file=files,
            concurrent_commits=concurrent,
            emptied_partitions=emptied,
            gate_record=gate_record,
            schema_changes=changes,
            profile=column_profile(files, staged.schema),
            storage_kind="parquet",
        )

    def _publish(
        self,
        log: ManifestLog,
        staged: StagedWrite,
        meta: TableMeta | None,
        before: Mapping[tuple[str, ...], PartitionManifest | None],
        app_id: str,
        write_id: str,
        gate_record: object,
        what: str,
    ) -> tuple[list[ConcurrentCommit], list[int], dict[str, int]]:
        """Publish the staged files: the table's schema first (a reader of an older partition
        then reads a new column as nulls), then one manifest per partition of the slice."""
        partition_slice = staged.partition_slice
        columns = partition_slice.columns
        self._publish_schema(log, meta, staged.schema, columns, what)
        values = self._stored_values(partition_slice, TableMeta(staged.schema, columns))
        now_live = log.read(columns, values)
        concurrent = self._concurrent(now_live, before, staged)
        if concurrent and self.on_concurrent_write == "fail":
            raise ConcurrentWriteError(
                f"{what}: "
                + "; ".join(c.describe() for c in concurrent)
                + " while this write ran. Nothing was published (on_concurrent_write='fail')."
            )
        files_by_values: dict[tuple[str, ...], list[ManifestFile]] = {v: [] for v in values}
        for stats in staged.files:
            key = tuple(stats.partition_values[c] for c in columns)
            files_by_values[key].append(ManifestFile(stats.path, stats.num_rows, stats.size_bytes))
        versions, emptied = [], {}
        published_at = time.time()
        keep_for = DEFAULT_RETENTION.total_seconds()
        for index, (stored, files) in enumerate(files_by_values.items()):
            previous = now_live.get(stored)
            manifest = PartitionManifest(
                partition_values=dict(zip(columns, stored, strict=True)),
                version=(previous.version if previous else 0) + 1,
                app_id=app_id,
                write_id=write_id,
                published_at=published_at,
                files=files,
                replaced=replaced_files(previous, keep_for, published_at),
                gate=gate_record if index == 0 else None,
            )
            log.publish(columns, manifest)
            versions.append(manifest.version)
            if previous is not None and previous.rows and not files:
                emptied[staged.partition_key(stored)] = previous.rows
        return concurrent, versions, emptied

    def _publish_schema(
        self,
        log: ManifestLog,
        meta: TableMeta | None,
        schema: pa.Schema,
        columns: tuple[str, ...],
        what: str,
    ) -> None:
        """Write `table.json` when the schema is new or changed. A writer that changed it
        meanwhile is merged with, or refused when the two cannot be merged."""
        current = log.read_table()
        if current is not None and current.schema.equals(schema):
            return
        if current is not None and (meta is None or not current.schema.equals(meta.schema)):
            merged = merge(current.schema, schema)
            if merged is None or list(current.partition_columns) != list(columns):
                raise SchemaMismatchError(
                    f"{what}: another write changed the table's schema while this one ran, and "
                    "the two cannot be merged. Nothing was published."
                )
            schema = merged
        log.write_table(TableMeta(schema, columns))

    def _concurrent(
        self,
        now_live: Mapping[tuple[str, ...], PartitionManifest | None],
        before: Mapping[tuple[str, ...], PartitionManifest | None],
        staged: StagedWrite,
    ) -> list[ConcurrentCommit]:
        found = []
        for stored, manifest in now_live.items():
            earlier = before.get(stored)
            if manifest is None or (earlier is not None and earlier.app_id == manifest.app_id):
                continue
            keys = (staged.partition_key(stored),) if stored else ()
            found.append(
                ConcurrentCommit(
                    table_version=manifest.version,
                    partition_keys=tuple(k for k in keys if k),
                    writer=f"ray_assets write '{manifest.write_id}'",
                )
            )
        return found

    def _refuse_partial_overwrite(
        self, log: ManifestLog, meta: TableMeta, staged: StagedWrite, what: str
    ) -> None:
        wanted = set(self._stored_values(staged.partition_slice, meta))
        outside = [
            m
            for m in log.read_all()
            if m.files
            and tuple(m.partition_values[c] for c in meta.partition_columns) not in wanted
        ]
        if outside:
            staged.remove_files()
            raise SchemaMismatchError(
                f"{what}: schema_evolution='overwrite' replaces the table's schema, so the write "
                f"must replace the whole table, but {len(outside)} partition(s) outside it hold "
                f"{sum(m.rows for m in outside)} row(s) in the old schema. Nothing was "
                "published. Materialize every partition in one run, or write the new schema to "
                "a new asset.\n" + "\n".join(schema_changes(meta.schema, staged.schema))
            )

    def _already_committed(
        self,
        partition_slice: PartitionSlice,
        manifests: Mapping[tuple[str, ...], PartitionManifest | None],
        meta: TableMeta,
        started: float,
    ) -> WriteResult:
        live = [m for m in manifests.values() if m is not None]
        key_of = dict(zip(manifests, partition_slice.keys or (), strict=False))
        partitions = (
            {
                key_of[stored]: PartitionWriteStats(m.rows, len(m.files), m.bytes)
                for stored, m in manifests.items()
                if m is not None
            }
            if partition_slice.is_partitioned
            else {}
        )
        return WriteResult(
            table_uri=redact_uri(self.table_uri),
            table_version=max(m.version for m in live),
            committed=False,
            rows_written=sum(m.rows for m in live),
            files_written=sum(len(m.files) for m in live),
            bytes_written=sum(m.bytes for m in live),
            partitions=partitions,
            schema=meta.schema,
            table_row_count=self.row_count(),
            duration_s=time.perf_counter() - started,
            gate_record=next((m.gate for m in live if m.gate is not None), None),
            storage_kind="parquet",
        )

    @staticmethod
    def _stored_values(partition_slice: PartitionSlice, meta: TableMeta) -> list[tuple[str, ...]]:
        if not partition_slice.is_partitioned:
            return [()]
        return list(partition_slice.stored_values(partition_slice.column_types(meta.schema)))

    # ------------------------------------------------------------------ read
    def data_files(self, partition_slice: PartitionSlice) -> list[DataFile]:
        """The live data files of `partition_slice`, from its partitions' manifests."""
        from ray_assets.storage.files_source import DataFile

        _, root = resolve_filesystem(self.table_uri, self.storage_options)
        return [
            DataFile(
                path=f"{root}/{file.path}",
                partition_values=manifest.partition_values,
                num_rows=file.rows,
                size_bytes=file.bytes,
            )
            for manifest in self.manifests(partition_slice)
            for file in manifest.files
        ]

    def read(
        self, partition_slice: PartitionSlice, columns: Sequence[str] | None = None
    ) -> ray.data.Dataset:
        """A lazy Dataset of exactly the slice's rows as published now: only the slice's
        partitions' files (pruned by their manifests) and only `columns`."""
        from ray_assets.storage.files_source import files_dataset

        meta = self._readable_meta(partition_slice)
        return files_dataset(
            self.data_files(partition_slice),
            table_schema=meta.schema,
            partition_columns=list(meta.partition_columns),
            columns=columns,
            table_uri=self.table_uri,
            storage_options=self.storage_options,
            name="ParquetTable",
            where=partition_slice.describe(),
        )

    def _readable_meta(self, partition_slice: PartitionSlice) -> TableMeta:
        meta = self._table_meta(self._log())
        where = f"{partition_slice.describe()}, table {redact_uri(self.table_uri)}"
        if meta is None:
            raise RayAssetsError(
                f"{where}: no ray_assets Parquet table exists there yet (no {META_DIR}/table.json)."
                " Materialize the asset first."
            )
        if partition_slice.is_partitioned and list(meta.partition_columns) != list(
            partition_slice.columns
        ):
            raise PartitionColumnError(
                f"{where}: the table is partitioned by {list(meta.partition_columns)}, but the "
                f"asset declares partition columns {list(partition_slice.columns)}."
            )
        return meta

    # ------------------------------------------------------------------ maintenance
    def cleanup(
        self,
        older_than: dt.timedelta = DEFAULT_RETENTION,
        *,
        dry_run: bool = False,
        now: dt.datetime | None = None,
    ) -> CleanupResult:
        """Delete the data files no manifest names that are older than `older_than`: files
        replaced by later writes and files of writes that never published (killed, refused).

        Files replaced less than `older_than` ago are kept for readers still reading them, and
        so are unreferenced files written less than `older_than` ago (a write may be about to
        publish them). `now` is the time ages are judged by (default: the current time).
        """
        if older_than < MIN_RETENTION:
            raise ValueError(
                f"table {redact_uri(self.table_uri)}: cleanup(older_than={older_than}) is shorter "
                f"than the safety window ({MIN_RETENTION}): it could delete the files of a write "
                "that is about to publish them, or files a reader is still reading."
            )
        moment = (now or dt.datetime.now(dt.timezone.utc)).timestamp()
        cutoff = moment - older_than.total_seconds()
        log = self._log()
        live: set[str] = set()
        recently_replaced: set[str] = set()
        for manifest in log.read_all():
            live.update(f.path for f in manifest.files)
            recently_replaced.update(path for path, at in manifest.replaced if at >= cutoff)
        selector = pafs.FileSelector(log.root, recursive=True, allow_not_found=True)
        removed, removed_bytes, kept = [], 0, 0
        for info in log.filesystem.get_file_info(selector):
            relative = info.path[len(log.root) :].lstrip("/")
            if info.type != pafs.FileType.File or not _DATA_FILE.search(relative):
                continue
            if relative in live:
                continue
            written = info.mtime.timestamp() if info.mtime is not None else moment
            if relative in recently_replaced or written >= cutoff:
                kept += 1
                continue
            if not dry_run:
                log.filesystem.delete_file(info.path)
            removed.append(relative)
            removed_bytes += info.size or 0
        return CleanupResult(len(removed), removed_bytes, kept, removed)
