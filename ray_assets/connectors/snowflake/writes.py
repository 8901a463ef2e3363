"""Partition-scoped replace in Snowflake: stage the rows, then delete and load in one
transaction.

The rows stream into Parquet files (`rows_per_file` each) that go, one by one, to a temporary
stage of this session (`PUT`; the local file is removed at once, so the driver holds one file's
rows at a time). Only then: `BEGIN`, `DELETE` the slice's rows, `COPY INTO` the table from the
stage, check that it loaded every row, `COMMIT`. A failure anywhere before `COMMIT` rolls the
transaction back: the old rows are all there, and a rerun replaces them again instead of adding
to them. Rows outside the slice are refused while staging, before anything is deleted. The stage
is temporary: Snowflake drops it with the session. `CREATE TABLE` commits on its own in
Snowflake, so a table created here for a write that then fails is dropped again (if it is still
empty: a writer racing to create it may have committed rows to it meanwhile).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ray_assets.connectors.slices import (
    RememberedErrors,
    Statement,
    checked_rows,
    slice_condition,
)
from ray_assets.connectors.snowflake.names import create_table, qualified, quote, split_table
from ray_assets.errors import UnstorableValueError, WarehouseError

COPY_OPTIONS = (
    "FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE) "
    "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE ON_ERROR = ABORT_STATEMENT FORCE = TRUE"
)
"""Parquet with its logical types (timestamps, decimals), columns matched by name; any bad
row aborts the whole load; FORCE because the files are new to this table by construction."""


class QmarkDialect:
    """Snowflake's server-side bound parameters (`paramstyle="qmark"`)."""

    def placeholder(self, number: int) -> str:
        return "?"

    def quote(self, name: str) -> str:
        return quote(name)


def replace_slice(
    connection: Any,
    table: str,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    slice_keys: Sequence[Mapping[str, Any]] | None,
    what: str,
    rows_per_file: int,
) -> int:
    """Replace the rows of `slice_keys` (all rows when None) with `batches`; the rows written."""
    try:
        ddl = create_table(table, schema)
    except UnstorableValueError as error:
        raise UnstorableValueError(f"{what}: {error}; nothing was written") from None
    cursor = connection.cursor()
    stage = f"RAY_ASSETS_LOAD_{uuid.uuid4().hex.upper()}"
    cursor.execute(f"CREATE TEMPORARY STAGE {stage}")
    checked = checked_rows(batches, slice_keys, what) if slice_keys is not None else batches
    source = RememberedErrors(checked)
    rows = source.reraise(lambda: _stage(cursor, stage, schema, source, rows_per_file))
    created = not has_table(cursor, table)
    if created:
        cursor.execute(ddl)
    try:
        cursor.execute("BEGIN")
        delete = Statement(QmarkDialect())
        text = f"DELETE FROM {qualified(table)}"
        if slice_keys is not None:
            text += " WHERE " + slice_condition(delete, slice_keys)
        cursor.execute(text, delete.params)
        if rows:
            cursor.execute(f"COPY INTO {qualified(table)} FROM @{stage} {COPY_OPTIONS}")
            loaded = sum(int(row[3] or 0) for row in cursor.fetchall())
            if loaded != rows:
                raise WarehouseError(
                    f"{what}: COPY INTO loaded {loaded} rows of the {rows} staged; nothing was "
                    "written"
                )
        cursor.execute("COMMIT")
        return rows
    except BaseException:
        cursor.execute("ROLLBACK")
        if created:  # unless another writer filled it since: its rows must stay
            cursor.execute(f"SELECT COUNT(*) FROM {qualified(table)}")
            if cursor.fetchone()[0] == 0:
                cursor.execute(f"DROP TABLE IF EXISTS {qualified(table)}")
        raise


def has_table(cursor: Any, table: str) -> bool:
    database, schema, name = split_table(table)
    catalog = f"{quote(database)}.INFORMATION_SCHEMA" if database else "INFORMATION_SCHEMA"
    cursor.execute(
        f"SELECT COUNT(*) FROM {catalog}.TABLES "
        "WHERE TABLE_SCHEMA = COALESCE(?, CURRENT_SCHEMA()) AND TABLE_NAME = ?",
        [schema, name],
    )
    return cursor.fetchone()[0] > 0


def _stage(
    cursor: Any,
    stage: str,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    rows_per_file: int,
) -> int:
    """Upload the batches as Parquet files of about `rows_per_file` rows; the rows staged."""
    rows = 0
    with tempfile.TemporaryDirectory(prefix="ray-assets-snowflake-") as folder:
        writer: pq.ParquetWriter | None = None
        path = Path(folder) / "part.parquet"
        in_file = 0
        number = 0

        def upload() -> None:
            nonlocal writer, in_file, number
            assert writer is not None
            writer.close()
            target = path.with_name(f"part-{number:05d}.parquet")
            path.rename(target)
            location = str(target).replace("\\", "/").replace("'", "\\'")
            cursor.execute(f"PUT 'file://{location}' @{stage} AUTO_COMPRESS = FALSE PARALLEL = 4")
            target.unlink()
            writer, in_file, number = None, 0, number + 1

        for batch in batches:
            if not batch.num_rows:
                continue
            if writer is None:
                writer = pq.ParquetWriter(path, schema)
            writer.write_batch(batch)
            in_file += batch.num_rows
            rows += batch.num_rows
            if in_file >= rows_per_file:
                upload()
        if writer is not None:
            upload()
    return rows
