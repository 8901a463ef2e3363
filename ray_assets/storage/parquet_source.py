"""External Parquet files as a Ray dataset: listed once on the driver, read with pushdown.

Ray Data 2.60's `read_parquet` routes through its DataSourceV2 reader, which provisions 32
footer-reading actors (`RAY_DATA_PARQUET_FOOTER_NUM_ACTORS`) for every read, whatever the
cluster: on 2 CPUs, reading 64 files' footers took about 26 s of a 42 s job, and every new Ray
job pays those processes again. Here the driver lists the files once (one recursive listing,
the schema from one footer) and each read task scans its group of files with `pyarrow.dataset`,
which pushes the column projection and the row filter into the Parquet reader (row groups whose
statistics exclude the filter are skipped). pyarrow's dataset scanner is the well-kept piece
that already does projection, filters and Hive partitions; this module only decides which task
reads which files. Imported lazily by `ray_assets.read_parquet_files`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from ray_assets.storage.files_source import _BATCH_ROWS, DataFile, FileGroupsDatasource
from ray_assets.storage.filesystem import resolve_filesystem
from ray_assets.storage.worker_options import WorkerOptions


class ParquetFilesDatasource(FileGroupsDatasource):
    """Reads Parquet files listed on the driver, each task a size-balanced group of files (their
    row counts are unknown to the listing: `DataFile.num_rows` is None until the filter runs)."""

    def __init__(
        self,
        *,
        root_uri: str,
        files: Sequence[DataFile],
        schema: pa.Schema,
        columns: Sequence[str] | None,
        row_filter: pads.Expression | None,
        partitioning: str | None,
        storage_options: Mapping[str, str] | None,
        dictionary_columns: Sequence[str] = (),
        folder_columns: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self._root_uri = root_uri
        self._files = list(files)
        self._columns = list(columns) if columns is not None else None
        self._row_filter = row_filter
        self._partitioning = partitioning
        self._storage_options = WorkerOptions(storage_options or {})
        # Parquet hands over the file columns' dictionary pages as they are; pyarrow cannot
        # read hive folder values as dictionaries into a given schema, so those are encoded
        # after the read (one value per file: cheap).
        self._file_dictionaries = [n for n in dictionary_columns if n not in folder_columns]
        self._folder_dictionaries = [n for n in dictionary_columns if n in folder_columns]
        self._read_schema = with_dictionary_types(schema, self._file_dictionaries)
        schema = with_dictionary_types(schema, dictionary_columns)
        self.output_schema = (
            pa.schema([schema.field(name) for name in self._columns])
            if self._columns is not None
            else schema
        )

    def get_name(self) -> str:
        return "ParquetFiles"

    def _read_files(self, files: Sequence[DataFile]) -> Iterator[pa.Table]:
        filesystem, root = resolve_filesystem(self._root_uri, self._storage_options.get())
        dataset = pads.dataset(
            [file.path for file in files],
            schema=self._read_schema,
            format=pads.ParquetFileFormat(
                read_options=pads.ParquetReadOptions(dictionary_columns=self._file_dictionaries)
            ),
            filesystem=filesystem,
            partitioning=self._partitioning,
            partition_base_dir=root if self._partitioning else None,
        )
        scanner = dataset.scanner(
            columns=self._columns,
            filter=self._row_filter,
            batch_size=_BATCH_ROWS,
            use_threads=False,  # the task has its CPU; pyarrow's pool would compete on the node
        )
        read_any = False
        for batch in scanner.to_batches():
            if batch.num_rows:
                read_any = True
                if self._folder_dictionaries:
                    yield self._with_folder_dictionaries(pa.Table.from_batches([batch]))
                else:
                    yield pa.Table.from_batches([batch], schema=self.output_schema)
        if not read_any:  # a block without columns would break the schema of what follows
            yield self.output_schema.empty_table()

    def _with_folder_dictionaries(self, table: pa.Table) -> pa.Table:
        for name in self._folder_dictionaries:
            if name in table.column_names:
                index = table.column_names.index(name)
                table = table.set_column(index, name, pc.dictionary_encode(table[name]))
        return table.cast(self.output_schema)


def with_dictionary_types(schema: pa.Schema, columns: Sequence[str]) -> pa.Schema:
    """`schema` with each of `columns` (string or binary) as a dictionary of its type, the type
    the Parquet reader then produces without decoding the file's own dictionary pages."""
    for name in columns:
        kind = schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_binary(kind)):
            raise ValueError(
                f"read_parquet_files: dictionary_columns {name!r} is {kind}; only string and "
                f"binary columns are read as dictionaries"
            )
        index = schema.get_field_index(name)
        schema = schema.set(index, schema.field(name).with_type(pa.dictionary(pa.int32(), kind)))
    return schema


def list_parquet_files(
    root_uri: str,
    storage_options: Mapping[str, str] | None,
    partitioning: str | None,
) -> tuple[list[DataFile], pa.Schema, list[str]]:
    """Every `*.parquet` file under `root_uri` (or the one file it names), their schema, and the
    columns of that schema that come from hive folder names: one recursive listing and one
    footer, on the driver. Files and folders starting with `_` or
    `.` (`_SUCCESS`, `_delta_log`, `.tmp` writes) are not data."""
    filesystem, root = resolve_filesystem(root_uri, storage_options)
    info = filesystem.get_file_info(root)
    if info.type == pa.fs.FileType.NotFound:
        raise FileNotFoundError(f"read_parquet_files: nothing at {root_uri}")
    if info.type == pa.fs.FileType.File:
        found = [info]
    else:
        selector = pa.fs.FileSelector(root, recursive=True)
        found = [
            entry
            for entry in filesystem.get_file_info(selector)
            if entry.type == pa.fs.FileType.File
            and entry.path.endswith(".parquet")
            and not _hidden(entry.path[len(root) :])
        ]
    if not found:
        raise FileNotFoundError(f"read_parquet_files: no .parquet files under {root_uri}")
    found.sort(key=lambda entry: entry.path)
    files = [
        DataFile(path=entry.path, partition_values={}, num_rows=None, size_bytes=entry.size)
        for entry in found
    ]
    first_file = pads.dataset(
        [found[0].path],
        format="parquet",
        filesystem=filesystem,
        partitioning=partitioning,
        partition_base_dir=root if partitioning else None,
    )
    schema = first_file.schema
    if not partitioning:  # every column is the file's: no second look at the footer
        return files, schema, []
    in_file = set(next(iter(first_file.get_fragments())).physical_schema.names)
    return files, schema, [name for name in schema.names if name not in in_file]


def _hidden(relative_path: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative_path.split("/") if part)
