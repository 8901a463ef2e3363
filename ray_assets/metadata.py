"""A write's statistics as Dagster metadata, under the standard `dagster/*` keys the UI shows.

`dagster/row_count` is the table's row count after the commit (Dagster's meaning of the key);
`dagster/partition_row_count` is one partition's, attached to that partition's event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pyarrow as pa

from ray_assets.storage.arrow_schema import arrow_type_from_name
from ray_assets.storage.delta_store import PartitionWriteStats, WriteResult

COLUMN_SCHEMA_KEY = "dagster/column_schema"


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=field.name, type=str(field.type)) for field in schema]
    )


def materialization_metadata(result: WriteResult, asset_key: dg.AssetKey) -> dict[str, object]:
    """Metadata of the whole write (every partition's event of a range run carries it)."""
    metadata: dict[str, object] = {
        "dagster/row_count": result.table_row_count,
        COLUMN_SCHEMA_KEY: column_schema(result.schema),
        "dagster/table_name": ".".join(asset_key.path),
        "dagster/uri": dg.MetadataValue.text(result.table_uri),
        "dagster/storage_kind": "deltalake",
        "delta/table_version": result.table_version,
        "delta/committed": result.committed,
        "rows_written": result.rows_written,
        "files_written": result.files_written,
        "bytes_written": result.bytes_written,
        "write_duration_s": round(result.duration_s, 3),
        "rows_per_second": round(result.rows_per_second, 1),
    }
    if result.warnings:
        metadata["warnings"] = dg.MetadataValue.md(
            "\n".join(f"- {warning}" for warning in result.warnings)
        )
    return metadata


def partition_metadata(stats: PartitionWriteStats) -> dict[str, object]:
    """Metadata of one partition of the write."""
    return {
        "dagster/partition_row_count": stats.rows,
        "partition_files": stats.files,
        "partition_bytes": stats.bytes,
    }


def partition_row_counts(result: WriteResult, keys: Sequence[str]) -> dict[str, int]:
    return {key: result.partitions[key].rows for key in keys if key in result.partitions}


def declared_column_types(definition_metadata: Mapping[str, Any] | None) -> dict[str, pa.DataType]:
    """Column types an asset declares in `dagster/column_schema`, as Arrow types.

    They type the columns a pipeline leaves all-null (Arrow's `null`, which Delta would store as
    `void`). Type names are `str(arrow_type)` (what ray_assets writes to the same key after a
    materialization) or common SQL names; a name neither understands is ignored.
    """
    declared = (definition_metadata or {}).get(COLUMN_SCHEMA_KEY)
    if isinstance(declared, dg.TableSchemaMetadataValue):
        declared = declared.schema
    if not isinstance(declared, dg.TableSchema):
        return {}
    types = {column.name: arrow_type_from_name(column.type) for column in declared.columns}
    return {name: kind for name, kind in types.items() if kind is not None}
