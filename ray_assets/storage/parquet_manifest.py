"""The commit step of a Parquet table: partition manifests, each replaced in one put.

A Parquet table is plain Hive-partitioned Parquet (`day=2024-01-01/part-….parquet`) plus a
`_ray_assets/` folder that Hive-style readers skip (pyarrow, Spark, DuckDB and Polars ignore
names that start with `_`):

* `_ray_assets/table.json`: the table's schema and partition columns;
* `_ray_assets/partitions/<partition>.json`: one manifest per partition, naming the data files
  that *are* the partition now.

A write puts its data files under fresh names beside the live ones and then publishes each
partition by replacing its manifest in a single put (a rename on a local disk). A put of one
object is atomic on every object store, so a reader that goes through the manifests sees a
partition's old files or its new ones, never a mix (a manifest read that raced a put and came
back torn is read again: `ray_assets.storage.documents`); a killed write leaves the old manifest, so
the old partition stays live. Files no manifest names any more are left for `cleanup`, since a
reader that read the old manifest a moment ago may still be reading them.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.fs as pafs

from ray_assets.storage.documents import put_document, read_document
from ray_assets.storage.files_sink import partition_directory

META_DIR = "_ray_assets"
_TABLE_FILE = f"{META_DIR}/table.json"
_PARTITIONS_DIR = f"{META_DIR}/partitions"
_WHOLE_TABLE = "_table"
"""Manifest name of an unpartitioned table (no Hive directory name can be empty)."""
_FORMAT = 1
_READ_THREADS = 16


@dataclass(frozen=True)
class TableMeta:
    """What `_ray_assets/table.json` holds: the schema every partition is read with."""

    schema: pa.Schema
    partition_columns: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": _FORMAT,
                "partition_columns": list(self.partition_columns),
                "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode(),
                "columns": {f.name: str(f.type) for f in self.schema},  # for people reading it
            },
            indent=1,
        )

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TableMeta:
        """The table meta of `table.json`'s parsed JSON."""
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(record["schema"])))
        return cls(schema=schema, partition_columns=tuple(record["partition_columns"]))


@dataclass(frozen=True)
class ManifestFile:
    """One data file of a partition: its path relative to the table root, rows and bytes."""

    path: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class PartitionManifest:
    """The files that are one partition now, and which write published them."""

    partition_values: dict[str, str]
    """Stored partition values by column (empty for an unpartitioned table)."""
    version: int
    """How many times the partition was published (1 for its first write)."""
    app_id: str
    """The write's identity (its write id and slice): a re-run of the same write finds it."""
    write_id: str
    published_at: float
    files: list[ManifestFile]
    replaced: list[tuple[str, float]] = field(default_factory=list)
    """Files earlier manifests named, with when they stopped being live: `cleanup` keeps them
    for its retention window, for readers that read an earlier manifest."""
    gate: Any = None
    """What the write's checks decided (kept in the first partition of the write only)."""

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_json(self) -> str:
        record = asdict(self)
        record["format"] = _FORMAT
        return json.dumps(record)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PartitionManifest:
        """The manifest of a partition document's parsed JSON."""
        record = dict(record)
        record.pop("format", None)
        record["files"] = [ManifestFile(**f) for f in record["files"]]
        record["replaced"] = [tuple(item) for item in record.get("replaced", [])]
        return cls(**record)


def manifest_name(columns: Sequence[str], values: Sequence[str]) -> str:
    """The manifest's file name: the partition's Hive directory, quoted into one name."""
    if not columns:
        return _WHOLE_TABLE
    return quote(partition_directory(columns, values), safe="")


class ManifestLog:
    """The `_ray_assets/` folder of one Parquet table on one filesystem."""

    def __init__(self, filesystem: pafs.FileSystem, root: str) -> None:
        self.filesystem = filesystem
        self.root = root

    # ------------------------------------------------------------------ table
    def read_table(self) -> TableMeta | None:
        record = self._read(f"{self.root}/{_TABLE_FILE}")
        return None if record is None else TableMeta.from_record(record)

    def write_table(self, meta: TableMeta) -> None:
        self._put(f"{self.root}/{_TABLE_FILE}", meta.to_json())

    # ------------------------------------------------------------------ partitions
    def read(
        self, columns: Sequence[str], values: Iterable[tuple[str, ...]]
    ) -> dict[tuple[str, ...], PartitionManifest | None]:
        """The manifests of the given partitions (None where a partition was never published),
        fetched side by side: on an object store each is one request."""
        wanted = list(values)
        paths = [self._manifest_path(manifest_name(columns, v)) for v in wanted]
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            records = list(pool.map(self._read, paths))
        return {
            v: None if record is None else PartitionManifest.from_record(record)
            for v, record in zip(wanted, records, strict=True)
        }

    def read_all(self) -> list[PartitionManifest]:
        """Every partition's manifest: one listing, then the manifests side by side."""
        selector = pafs.FileSelector(f"{self.root}/{_PARTITIONS_DIR}", allow_not_found=True)
        paths = [
            info.path
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File and info.path.endswith(".json")
        ]
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            records = list(pool.map(self._read, paths))
        return [PartitionManifest.from_record(r) for r in records if r is not None]

    def publish(self, columns: Sequence[str], manifest: PartitionManifest) -> None:
        """Make `manifest` the partition's, in one put."""
        values = tuple(manifest.partition_values[c] for c in columns)
        self._put(self._manifest_path(manifest_name(columns, values)), manifest.to_json())

    # ------------------------------------------------------------------ plumbing
    def _manifest_path(self, name: str) -> str:
        return f"{self.root}/{_PARTITIONS_DIR}/{name}.json"

    def _read(self, path: str) -> dict[str, Any] | None:
        return read_document(self.filesystem, path)

    def _put(self, path: str, text: str) -> None:
        put_document(self.filesystem, path, text)


def replaced_files(
    previous: PartitionManifest | None, keep_for_s: float, now: float | None = None
) -> list[tuple[str, float]]:
    """What a new manifest remembers as replaced: the previous manifest's files as of now, and
    the files it remembered that are still within `keep_for_s` of being replaced."""
    if previous is None:
        return []
    now = time.time() if now is None else now
    recent = [(path, at) for path, at in previous.replaced if at >= now - keep_for_s]
    return recent + [(f.path, now) for f in previous.files]
