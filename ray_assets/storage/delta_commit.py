"""The commit of a Delta write: one transaction that replaces exactly a slice, exactly once.

The task-side half (`files_sink`) has written the files; this module makes them visible in one
partition-scoped overwrite, and makes three promises:

* **Idempotent.** The commit carries a transaction id derived from the write id (a Dagster run
  id): a retried or re-run write finds it and changes nothing; an ambiguous commit (an error
  after the log file may have landed) is resolved by reading it back.
* **Exactly one writer's rows per partition.** delta-rs's conflict checker only sees a
  concurrent commit of the same partition when both remove the same files: the overwrite of an
  empty (new) partition removes nothing and would land beside a concurrent one, doubling the
  partition. So every commit also carries one *partition lease* transaction per partition it
  replaces; two commits with the same lease id conflict in delta-rs (`ConcurrentTransaction`),
  whatever files they remove.
* **Told, never silent.** Before each attempt the commits made since the write read the table
  are scanned for data changes in the slice. A write that finds one either fails
  (`on_concurrent_write="fail"`) or replaces those rows and reports it (`"warn"`, the default:
  the last writer wins, and says so). Before each attempt the table's layout and schema are
  checked again, so a table created or altered by another writer while this one ran is never
  given files of another schema.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from ray_assets.errors import CommitError, ConcurrentWriteError, RayAssetsError, SchemaMismatchError
from ray_assets.partition_slice import PartitionSlice, canonical_partition_text
from ray_assets.storage.arrow_schema import schema_diff
from ray_assets.storage.filesystem import resolve_filesystem
from ray_assets.storage.ray_errors import describe_cause

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from ray_assets.storage.delta_store import DeltaStore
    from ray_assets.storage.file_stats import FileStats

OnConcurrentWrite = Literal["warn", "fail"]
"""What a write does when another write committed some of its partitions while it ran."""

MARKER = "ray_assets"
WRITE_ID_KEY = f"{MARKER}.write_id"
GATE_KEY = f"{MARKER}.checks"
"""Commit metadata key of what the write's checks decided."""
_LEASE_PREFIX = f"{MARKER}.lease-"
_COMMIT_SEARCH_DEPTH = 1000
"""How far back to look for a commit of ours: concurrent writers add a few versions, not more."""


@dataclass(frozen=True)
class ConcurrentCommit:
    """A commit by another writer that changed some of this write's partitions while it ran."""

    table_version: int
    partition_keys: tuple[str, ...]
    """Dagster keys of the slice it touched (empty for an unpartitioned table)."""
    writer: str
    """Who made it: `ray_assets write '<write id>'` or the operation of another Delta writer."""

    def describe(self) -> str:
        what = (
            f"partition(s) {', '.join(repr(k) for k in self.partition_keys)}"
            if self.partition_keys
            else "the table"
        )
        return f"{what} committed by {self.writer} at version {self.table_version}"


@dataclass(frozen=True)
class CommitOutcome:
    """What the commit did: its version, whether this call made it, and what it replaced."""

    table_version: int
    committed: bool
    concurrent: list[ConcurrentCommit] = field(default_factory=list)
    emptied: dict[str, int] = field(default_factory=dict)
    """Partition key -> rows it held before this commit emptied it."""
    attempts: int = 1
    """How many times this call tried to commit (more than 1: it lost races to other writers)."""


def lease_id(columns: Sequence[str], values: Sequence[str]) -> str:
    """The transaction id every commit of one partition carries (a digest: keys stay out of the log)."""
    text = "\x1f".join(columns) + "\x1e" + "\x1f".join(values)
    return _LEASE_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32]


def lease_ids(partition_slice: PartitionSlice) -> list[str]:
    """One lease per partition of the slice; one for the whole table when it is unpartitioned."""
    if not partition_slice.is_partitioned:
        return [lease_id((), ("<table>",))]
    return [lease_id(partition_slice.columns, values) for values in partition_slice.values]


class SliceCommitter:
    """Commits a write's files into `store`, replacing exactly `partition_slice`."""

    def __init__(
        self,
        store: DeltaStore,
        partition_slice: PartitionSlice,
        *,
        app_id: str,
        read_version: int | None,
        on_concurrent_write: OnConcurrentWrite,
        what: str,
        read_schema: pa.Schema | None = None,
    ) -> None:
        self.store = store
        self.partition_slice = partition_slice
        self.app_id = app_id
        self.read_version = -1 if read_version is None else read_version
        self.read_schema = read_schema
        self.on_concurrent_write = on_concurrent_write
        self.what = what

    def commit(
        self, files: Sequence[FileStats], schema: pa.Schema, custom: Mapping[str, Any]
    ) -> CommitOutcome:
        """Commit `files` (of `schema`) in one transaction; retry lost races with jitter."""
        from deltalake import CommitProperties, Schema, Transaction
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import create_table_with_add_actions

        adds = _add_actions(files)
        leases = lease_ids(self.partition_slice)
        partition_by = list(self.partition_slice.columns) or None
        checked_version = self.read_version
        concurrent: list[ConcurrentCommit] = []
        last_error: Exception | None = None
        attempt = 0
        for attempt in range(1, self.store.max_commit_attempts + 1):
            table = self.store.open_table()
            if table is not None:
                if table.transaction_version(self.app_id) is not None:
                    version = commit_version(self.store, table, self.app_id)
                    return CommitOutcome(version, attempt > 1, concurrent, attempts=attempt)
                self._check_table_still_fits(table, schema)
                found = self._commits_touching_slice(table, checked_version + 1, table.version())
                checked_version = table.version()
                if found:
                    self._refuse_if_asked(found)
                    concurrent.extend(found)
            next_version = 0 if table is None else table.version() + 1
            properties = CommitProperties(
                custom_metadata=dict(custom),
                # delta-rs 1.6.6 retries a CREATE TABLE that lost the race for version 0 as a
                # second CREATE TABLE at version 1, with its own schema and no conflict check:
                # two creators both "succeed". With no retries the loser fails, and the next
                # attempt checks the table the winner made.
                max_commit_retries=0 if table is None else self.store.max_commit_retries,
                app_transactions=[Transaction(self.app_id, 0)]
                + [Transaction(lease, next_version) for lease in leases],
            )
            emptied = self._emptied_partitions(table, files)
            try:
                if table is None:
                    create_table_with_add_actions(
                        self.store.table_uri,
                        Schema.from_arrow(schema),
                        adds,
                        mode="error",
                        partition_by=partition_by,
                        storage_options=self.store.storage_options or None,
                        commit_properties=properties,
                    )
                else:
                    table.create_write_transaction(
                        adds,
                        mode="overwrite",
                        schema=table.schema()
                        if self.store.table_schema(table).equals(schema)
                        else Schema.from_arrow(schema),
                        partition_by=partition_by,
                        partition_filters=self._delta_filters(schema),
                        commit_properties=properties,
                    )
                committed = self.store.open_table()
                assert committed is not None
                return CommitOutcome(
                    commit_version(self.store, committed, self.app_id),
                    True,
                    concurrent,
                    emptied,
                    attempts=attempt,
                )
            except CommitFailedError as error:
                last_error = error  # a lost race: the next attempt re-reads the table
            except Exception as error:  # noqa: BLE001 - the outcome may be ambiguous; re-check
                last_error = error
                current = self.store.open_table()
                if current is not None and current.transaction_version(self.app_id) is not None:
                    return CommitOutcome(
                        commit_version(self.store, current, self.app_id),
                        True,
                        concurrent,
                        emptied,
                        attempts=attempt,
                    )
                if table is not None or current is None:
                    break  # not a lost race: a real error
                # the table was created by another writer meanwhile: check it and commit into it
            time.sleep(random.uniform(0, min(5.0, 0.1 * 2**attempt)))
        raise CommitError(
            f"{self.what}: the Delta commit failed after {attempt} attempt(s); the table is still "
            f"at its previous version. Cause: {describe_cause(last_error)}"
        ) from last_error

    # ------------------------------------------------------------------ checks before a commit
    def _check_table_still_fits(self, table: DeltaTable, schema: pa.Schema) -> None:
        """The table as it is now must take these files: a concurrent creator may have differed."""
        self.store.check_table_layout(table, self.partition_slice, self.what)
        # the schema this write evolved from (the table's when it started), else its own
        diff = schema_diff(self.store.table_schema(table), self.read_schema or schema)
        if diff:
            raise SchemaMismatchError(
                f"{self.what}: the table's schema at version {table.version()} differs from the "
                "schema this write started from (another writer created or changed the table "
                "while this write ran). Nothing was committed. Column by column:\n"
                + "\n".join(diff)
            )

    def _refuse_if_asked(self, found: Sequence[ConcurrentCommit]) -> None:
        if self.on_concurrent_write != "fail":
            return
        raise ConcurrentWriteError(
            f"{self.what}: {'; '.join(c.describe() for c in found)} while this write ran (it "
            f"read version {self.read_version}). Nothing was committed: the table keeps that "
            "write's rows (on_concurrent_write='fail'). Run again to replace them."
        )

    def _commits_touching_slice(
        self, table: DeltaTable, first: int, last: int
    ) -> list[ConcurrentCommit]:
        """Commits in versions `first..last` whose data changes touch this write's slice."""
        if first > last:
            return []
        types = self.partition_slice.column_types(self.store.table_schema(table))
        wanted = (
            self.partition_slice.stored_values(types) if self.partition_slice.is_partitioned else ()
        )
        key_of = dict(zip(wanted, self.partition_slice.keys or (), strict=True)) if wanted else {}
        found = []
        for version in range(max(first, 0), last + 1):
            actions = read_commit(self.store, version)
            if actions is None:
                continue
            touched: dict[str, None] = {}
            touches_table = False
            for action in actions:
                change = action.get("add") or action.get("remove")
                if not change or not change.get("dataChange", True):
                    continue
                touches_table = True
                if wanted:
                    values = _canonical_values(change.get("partitionValues") or {}, types)
                    if values in key_of:
                        touched[key_of[values]] = None
            if touched or (touches_table and not self.partition_slice.is_partitioned):
                found.append(ConcurrentCommit(version, tuple(touched), _writer_of(actions)))
        return found

    def _stored_values(self, table: DeltaTable) -> tuple[tuple[str, ...], ...]:
        if not self.partition_slice.is_partitioned:
            return ()
        types = self.partition_slice.column_types(self.store.table_schema(table))
        return self.partition_slice.stored_values(types)

    def _delta_filters(self, schema: pa.Schema) -> list[tuple[str, str, Any]] | None:
        types = self.partition_slice.column_types(schema)
        return self.partition_slice.delta_partition_filters(types)

    def _emptied_partitions(
        self, table: DeltaTable | None, files: Sequence[FileStats]
    ) -> dict[str, int]:
        """Partitions this commit leaves empty that held rows: legitimate, but worth a warning."""
        if table is None:
            return {}
        columns = self.partition_slice.columns
        written = {tuple(f.partition_values[c] for c in columns) for f in files}
        stored = self._stored_values(table) if self.partition_slice.is_partitioned else ((),)
        keys = self.partition_slice.keys or ("",)
        empty = {
            key: values for key, values in zip(keys, stored, strict=True) if values not in written
        }
        if not empty:
            return {}
        before = self.store.rows_by_partition(table, self.partition_slice)
        return {key: before[values] for key, values in empty.items() if before.get(values)}


def read_commit(store: DeltaStore, version: int) -> list[dict[str, Any]] | None:
    """The actions of one commit file of `store`'s table, or None when log retention removed it."""
    filesystem, root = resolve_filesystem(store.table_uri, store.storage_options)
    try:
        with filesystem.open_input_stream(f"{root}/_delta_log/{version:020d}.json") as f:
            return [json.loads(line) for line in f.read().decode().splitlines() if line]
    except FileNotFoundError:
        return None


def commit_version(store: DeltaStore, table: DeltaTable, app_id: str) -> int:
    """The table version whose commit carries transaction id `app_id`.

    Read from the commit files themselves, newest first: `DeltaTable.history()` numbers its
    entries from the latest version in storage rather than the loaded one, so with a
    concurrent writer it can be off by one (observed: our version 1 reported as 0).
    """
    newest = table.version()
    for version in range(newest, max(-1, newest - _COMMIT_SEARCH_DEPTH), -1):
        actions = read_commit(store, version)
        if actions is None:
            break  # cleaned up by log retention: older than anything we look for
        if any(a.get("txn", {}).get("appId") == app_id for a in actions):
            return version
    return newest


def _add_actions(files: Sequence[FileStats]) -> list[Any]:
    from deltalake.transaction import AddAction

    now = int(time.time() * 1000)
    return [
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


def _canonical_values(
    raw: Mapping[str, str | None], types: Mapping[str, pa.DataType]
) -> tuple[str | None, ...]:
    """A log entry's partition values in ray_assets' canonical text (any writer's format)."""
    values = []
    for column, kind in types.items():
        value = raw.get(column)
        values.append(value if value is None else canonical_partition_text(value, kind) or value)
    return tuple(values)


def _writer_of(actions: Sequence[Mapping[str, Any]]) -> str:
    info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
    write_id = info.get(WRITE_ID_KEY)
    if write_id:
        return f"ray_assets write '{write_id}'"
    return f"another writer ({info.get('operation', 'unknown operation')})"


def refuse_unknown_policy(value: str) -> OnConcurrentWrite:
    """Validate `on_concurrent_write` where it is configured, not at the first race."""
    if value not in ("warn", "fail"):
        raise RayAssetsError(
            f"on_concurrent_write must be 'warn' or 'fail', not {value!r}: 'warn' replaces the "
            "rows of a write that committed the same partitions meanwhile and reports it, 'fail' "
            "leaves them and fails."
        )
    return value  # type: ignore[return-value]
