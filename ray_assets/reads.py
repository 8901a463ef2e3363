"""Reading data that ray_assets did not write: Parquet files anywhere pyarrow can reach.

The library's own tables are read back by `DeltaIOManager` from exact file lists. Sources
outside it (an export folder, a data lake prefix) get the same shape through
`read_parquet_files`: one listing on the driver, projection and filters pushed into the Parquet
reader, tasks balanced by file size. Ray and pyarrow load when it is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.dataset as pads
    import ray.data


def read_parquet_files(
    path: str,
    *,
    columns: Sequence[str] | None = None,
    filter: pads.Expression | None = None,  # noqa: A002 - pyarrow's and Ray's name for it
    partitioning: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    dictionary_columns: Sequence[str] = (),
) -> ray.data.Dataset:
    """A lazy dataset of the Parquet files under `path` (a folder, searched recursively, or one
    file; local or `s3://`), with only `columns` and only the rows where `filter` (a
    `pyarrow.compute` expression, e.g. `pc.field("valid")`) holds. `partitioning="hive"` reads
    `day=2024-01-01/` folders as a `day` column. Use it instead of `ray.data.read_parquet` on
    small clusters: see `ray_assets.storage.parquet_source` for what that one costs.

    `dictionary_columns` names string columns of few distinct values (days, currency or country
    codes) to read as Arrow dictionaries: Parquet already stores them so, and decoding every row
    into a string is most of what reading them costs (about 3x less read time on the benchmark's
    `day` and `currency`). Batch functions then see `pa.DictionaryArray`s: `ray_assets.lookup`,
    filters, `aggregate_by` and the Delta writer take them as they are."""
    from ray_assets.storage.parquet_source import ParquetFilesDatasource, list_parquet_files

    files, schema, folder_columns = list_parquet_files(path, storage_options, partitioning)
    for asked in (columns or [], dictionary_columns):
        unknown = [name for name in asked if name not in schema.names]
        if unknown:
            raise ValueError(
                f"read_parquet_files({path!r}): no column {unknown} in the files; they hold "
                f"{schema.names}"
            )
    return ParquetFilesDatasource(
        root_uri=path,
        files=files,
        schema=schema,
        columns=columns,
        row_filter=filter,
        partitioning=partitioning,
        storage_options=storage_options,
        dictionary_columns=dictionary_columns,
        folder_columns=folder_columns,
    ).dataset()
