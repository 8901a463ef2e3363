"""Table maintenance: reclaim what killed writes left, compact small files, vacuum old ones.

Three jobs, in this order, each safe beside running writes:

1. **Reclaim orphans.** A write killed before its commit leaves its data files behind (one
   probe: 42 files), and delta-rs' `vacuum` keeps them for its retention window (7 days),
   because it cannot know whether a live writer is about to commit them. ray_assets can: every
   write records itself (`storage/write_records.py`) before it writes a file. A file no table
   version references, whose write is over (Dagster says its run finished) and never committed
   (its transaction id is not in the table), can never become part of the table: it is deleted
   now. A running write's files are kept, whatever their age.
2. **Compact.** Partitions written by many small blocks hold many small files, and every read
   pays per file. delta-rs' `optimize.compact` rewrites them in a commit that changes no data,
   which concurrent ray_assets writes recognise (they ignore it when checking for concurrent
   writers, and a write that loses the race to it re-reads the table and commits after it).
3. **Vacuum** the files replaced longer ago than the retention window, which may not be shorter
   than 7 days: a snapshot that old may still be read, and a vacuum shorter than a write's
   duration deletes files that write is about to commit (reproduced: the table then fails to
   read).

`maintain_table` runs them on one table; `table_maintenance_job` is a Dagster job that runs
them on every table of the given assets, with the results as observations on each asset.
"""

import datetime as dt
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs

from ray_assets.errors import RayAssetsError
from ray_assets.storage.filesystem import redact_uri, resolve_filesystem
from ray_assets.storage.write_records import RECORDS_DIR, forget_write, read_records

if TYPE_CHECKING:
    from ray_assets.storage.delta_store import DeltaStore

MIN_RETENTION = dt.timedelta(days=7)
"""The shortest vacuum retention allowed: Delta's own default, and longer than any write."""
_DATA_FILE = re.compile(r"(?:^|/)part-([0-9a-f]{16})-\d{5}-\d{5}\.parquet$")

WriteIsOver = Callable[[str], bool]

ABANDONED_AFTER = dt.timedelta(hours=1)
"""How old a data file with no write record and no commit must be before it is reclaimed."""
"""Says whether the write with this write id (a Dagster run id) can no longer commit."""


@dataclass(frozen=True)
class MaintenanceResult:
    """What maintenance did to one table."""

    table_uri: str
    orphans_removed: list[str] = field(default_factory=list)
    orphan_bytes: int = 0
    files_of_running_writes: int = 0
    """Unreferenced files kept because their write may still commit them."""
    files_before: int = 0
    files_after: int = 0
    compacted_partitions: int = 0
    vacuumed: list[str] = field(default_factory=list)
    dry_run: bool = False

    def metadata(self) -> dict[str, Any]:
        return {
            "maintenance/orphans_removed": len(self.orphans_removed),
            "maintenance/orphan_bytes": self.orphan_bytes,
            "maintenance/files_of_running_writes": self.files_of_running_writes,
            "maintenance/files_before": self.files_before,
            "maintenance/files_after": self.files_after,
            "maintenance/compacted_partitions": self.compacted_partitions,
            "maintenance/vacuumed_files": len(self.vacuumed),
            "maintenance/dry_run": self.dry_run,
        }


def maintain_table(
    store: "DeltaStore",
    write_is_over: WriteIsOver,
    *,
    retention: dt.timedelta = MIN_RETENTION,
    compact: bool = True,
    dry_run: bool = False,
) -> MaintenanceResult:
    """Reclaim orphans, compact and vacuum one table (see the module's docstring).

    `write_is_over` must answer False for a write that might still commit: it is what keeps a
    running write's files. `dry_run` reports what would be removed and changes nothing.
    """
    if retention < MIN_RETENTION:
        raise ValueError(
            f"table {redact_uri(store.table_uri)}: a vacuum retention of {retention} is shorter "
            f"than the safety window ({MIN_RETENTION}): readers of older snapshots and writes "
            "still running could lose files they need. Killed writes' files need no short "
            "retention: maintenance reclaims them as soon as their run is over."
        )
    table = store.open_table()
    if table is None:
        raise RayAssetsError(f"table {redact_uri(store.table_uri)}: no Delta table exists there.")
    removed, removed_bytes, running = reclaim_orphans(store, write_is_over, dry_run=dry_run)
    before = len(table.file_uris())
    compacted = 0
    if compact and not dry_run:
        metrics = table.optimize.compact()
        compacted = int(metrics.get("partitionsOptimized") or 0)
        table = store.open_table()
        assert table is not None
    vacuumed = table.vacuum(
        retention_hours=int(retention.total_seconds() // 3600),
        dry_run=dry_run,
        enforce_retention_duration=True,
        full=True,
    )
    return MaintenanceResult(
        table_uri=redact_uri(store.table_uri),
        orphans_removed=removed,
        orphan_bytes=removed_bytes,
        files_of_running_writes=running,
        files_before=before,
        files_after=len(table.file_uris()),
        compacted_partitions=compacted,
        vacuumed=list(vacuumed),
        dry_run=dry_run,
    )


def reclaim_orphans(
    store: "DeltaStore",
    write_is_over: WriteIsOver,
    *,
    dry_run: bool = False,
    abandoned_after: dt.timedelta = ABANDONED_AFTER,
) -> tuple[list[str], int, int]:
    """Delete the files that can never be read: those of writes that are over and never
    committed, and those no commit ever added although their write is done (a record exists
    from a write's start to its commit, so a file without one whose path is in no `add` of the
    log was abandoned by a retried task of a write that committed without it, or of one that
    was refused; only once older than `abandoned_after`, 1 hour, since a write that started
    after the records were read has no record in them). A file a commit added and a later one
    removed stays for vacuum: readers of older versions may still need it. Returns (paths, bytes, files kept because their write
    may still commit them)."""
    table = store.open_table()  # None when no write ever committed: nothing is referenced
    filesystem, root = resolve_filesystem(store.table_uri, store.storage_options)
    referenced = (
        set()
        if table is None
        else {
            unquote(path)
            for path in pa.table(table.get_add_actions(flatten=True))["path"].to_pylist()
        }
    )
    records = {record.write_uuid: record for record in read_records(filesystem, root)}
    committed = {  # a transaction's version may be 0: compare with None
        uuid
        for uuid, record in records.items()
        if table is not None and table.transaction_version(record.app_id) is not None
    }
    dead = {
        uuid
        for uuid, record in records.items()
        if uuid not in committed and write_is_over(record.write_id)
    }
    removed, removed_bytes, running = [], 0, 0
    cutoff = time.time() - abandoned_after.total_seconds()
    history: set[str] | None = None

    def ever_added() -> set[str]:  # read once, and only when a file needs it
        nonlocal history
        if history is None:
            history = _paths_ever_added(filesystem, root)
        return history

    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    for info in filesystem.get_file_info(selector):
        relative = info.path[len(root) :].lstrip("/")
        match = _DATA_FILE.search(relative)
        if info.type != pafs.FileType.File or match is None or relative in referenced:
            continue
        if relative.startswith(("_delta_log/", f"{RECORDS_DIR}/")):
            continue
        uuid = match.group(1)
        abandoned = (
            uuid not in records
            and info.mtime is not None
            and info.mtime.timestamp() < cutoff  # a write that started after we read the
            and relative not in ever_added()  # records has files younger than that
        )
        if uuid in dead or abandoned:
            # a dead write's file, or one no commit ever added although its write is done
            # (no record): an attempt a retried task abandoned. Neither can ever be read.
            if not dry_run:
                filesystem.delete_file(info.path)
            removed.append(relative)
            removed_bytes += info.size or 0
        elif uuid in records and uuid not in committed:
            running += 1  # vacuum leaves them too: they are younger than its window
    if not dry_run:
        for uuid in dead | committed:  # nothing of these writes is left to decide
            forget_write(filesystem, root, uuid)
    return removed, removed_bytes, running


def run_is_over(instance: dg.DagsterInstance) -> WriteIsOver:
    """A write is over when its Dagster run finished (succeeded, failed or was canceled); a
    write id that names no run of this instance (a script's write) is never taken as over."""

    def is_over(write_id: str) -> bool:
        run = instance.get_run_by_id(write_id)
        return run is not None and run.is_finished

    return is_over


class MaintenanceConfig(dg.Config):
    """The maintenance job's settings, as the launchpad shows them."""

    retention_days: int = 7
    compact: bool = True
    dry_run: bool = False


def table_maintenance_job(
    assets: Sequence[dg.AssetsDefinition | dg.AssetKey | str],
    *,
    io_manager_key: str = "delta_io_manager",
    name: str = "table_maintenance",
) -> dg.JobDefinition:
    """A job that maintains the Delta tables of `assets` (stored by the `DeltaIOManager` at
    `io_manager_key`) and records what it did as an observation of each asset. Its config
    (`retention_days`, default 7; `compact`; `dry_run`) can be changed in the launchpad; put it
    on a schedule for the weekly clean-up."""
    keys = [_key_of(asset) for asset in assets]

    @dg.op(name=f"{name}_op", required_resource_keys={io_manager_key})
    def maintain(context: dg.OpExecutionContext, config: MaintenanceConfig) -> None:
        io_manager = getattr(context.resources, io_manager_key)
        is_over = run_is_over(context.instance)
        for key in keys:
            store = io_manager.store_for(key)
            if store.open_table() is None:  # only the files of first writes that failed
                removed, _, _ = reclaim_orphans(store, is_over, dry_run=config.dry_run)
                context.log.info(
                    f"{key.to_user_string()}: no table yet; {len(removed)} file(s) of failed "
                    "first writes reclaimed"
                )
                continue
            result = maintain_table(
                store,
                is_over,
                retention=dt.timedelta(days=config.retention_days),
                compact=config.compact,
                dry_run=config.dry_run,
            )
            context.log.info(
                f"{key.to_user_string()}: {len(result.orphans_removed)} orphaned file(s) of "
                f"killed runs reclaimed, {result.files_before} -> {result.files_after} files "
                f"({result.compacted_partitions} partition(s) compacted), "
                f"{len(result.vacuumed)} file(s) vacuumed"
            )
            context.log_event(dg.AssetObservation(asset_key=key, metadata=result.metadata()))

    @dg.job(name=name, description="Reclaims killed runs' files, compacts and vacuums tables.")
    def maintenance_job() -> None:
        maintain()

    return maintenance_job


def _key_of(asset: dg.AssetsDefinition | dg.AssetKey | str) -> dg.AssetKey:
    if isinstance(asset, dg.AssetsDefinition):
        return asset.key
    return asset if isinstance(asset, dg.AssetKey) else dg.AssetKey.from_user_string(asset)


def _paths_ever_added(filesystem: pafs.FileSystem, root: str) -> set[str]:
    """Every data file path an `add` action of the table's log names, in any version still in
    the log (commits and checkpoints). A file added before the oldest version kept there was
    removed more than the log's retention (30 days by default) ago, and vacuum's window is
    shorter than that."""
    import json

    import pyarrow.parquet as pq

    paths: set[str] = set()
    selector = pafs.FileSelector(f"{root}/_delta_log", allow_not_found=True)
    for info in filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        name = info.path.rsplit("/", 1)[-1]
        if name.endswith(".json") and name[:20].isdigit():
            with filesystem.open_input_stream(info.path) as stream:
                for line in stream.read().decode().splitlines():
                    action = json.loads(line) if line.strip() else {}
                    if "add" in action:
                        paths.add(unquote(action["add"]["path"]))
        elif ".checkpoint" in name and name.endswith(".parquet"):
            with filesystem.open_input_file(info.path) as handle:
                adds = pq.read_table(handle, columns=["add"]).column("add").to_pylist()
            paths.update(unquote(add["path"]) for add in adds if add)
    return paths
