"""A write's statistics as Dagster metadata, under the standard `dagster/*` keys the UI shows.

`dagster/row_count` is the table's row count after the commit (Dagster's meaning of the key);
`dagster/partition_row_count` is one partition's, attached to that partition's event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pyarrow as pa

from ray_assets._compat import ray_dashboard_url
from ray_assets.storage.arrow_schema import arrow_type_from_name
from ray_assets.storage.write_result import ColumnProfile, PartitionWriteStats, WriteResult

COLUMN_SCHEMA_KEY = "dagster/column_schema"
COLUMN_LINEAGE_KEY = "dagster/column_lineage"
SCHEMA_EVOLUTION_KEY = "schema_evolution"
"""Definition metadata key of an asset's schema evolution policy (`ray_asset(schema_evolution=)`
writes it; a plain `dg.asset` stored by `DeltaIOManager` may set it too)."""
DECLARED_LINEAGE_KEY = "column_lineage"
"""Definition metadata key of the column lineage an asset declares (`ray_asset(column_lineage=)`)."""
UNKNOWN_TYPE = "unknown"
"""The type shown for a column described before its first materialization gives its type."""
_DOC_SECTION = re.compile(r"^\s*Columns:\s*$")
_DOC_ITEM = re.compile(r"^\s+([A-Za-z_][\w.]*)\s*(?:\(([^)]*)\))?\s*:\s*(.+)$")


def column_schema(schema: pa.Schema, described: Mapping[str, str] | None = None) -> dg.TableSchema:
    """The written schema with the descriptions the asset declares."""
    described = described or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name, type=str(field.type), description=described.get(field.name)
            )
            for field in schema
        ]
    )


def declared_column_schema(
    definition_metadata: Mapping[str, Any],
    columns: Mapping[str, str] | Sequence[dg.TableColumn] | None,
    docstring: str | None,
) -> dg.TableSchema | None:
    """The column table an asset shows before its first run: its `dagster/column_schema`
    metadata, with descriptions from `columns=` or the docstring's "Columns:" section."""
    declared = _table_schema(definition_metadata.get(COLUMN_SCHEMA_KEY))
    if columns is None:
        described = docstring_columns(docstring)
        given = [
            dg.TableColumn(name, UNKNOWN_TYPE, description=text) for name, text in described.items()
        ]
    elif isinstance(columns, Mapping):
        given = [
            dg.TableColumn(name, UNKNOWN_TYPE, description=text) for name, text in columns.items()
        ]
    else:
        given = list(columns)
    if not given:
        return declared
    by_name = {column.name: column for column in (declared.columns if declared else [])}
    for column in given:
        known = by_name.get(column.name)
        if known is not None and column.type == UNKNOWN_TYPE:
            column = dg.TableColumn(
                column.name,
                known.type,
                description=column.description or known.description,
                constraints=known.constraints,
                tags=known.tags,
            )
        by_name[column.name] = column
    return dg.TableSchema(columns=list(by_name.values()))


def docstring_columns(docstring: str | None) -> dict[str, str]:
    """Column descriptions from a Google-style "Columns:" section:

    Columns:
        order_id: the order system's identifier.
        amount (float64): signed; returns are negative.
    """
    found: dict[str, str] = {}
    inside = False
    for line in (docstring or "").splitlines():
        if _DOC_SECTION.match(line):
            inside = True
            continue
        if not inside:
            continue
        item = _DOC_ITEM.match(line)
        if item:
            found[item.group(1)] = item.group(3).strip()
        elif line.strip() and not line.startswith((" ", "\t")):
            break
        elif line.strip() and found:
            last = next(reversed(found))
            found[last] += " " + line.strip()
        elif not line.strip() and found:
            break
    return found


def column_descriptions(definition_metadata: Mapping[str, Any] | None) -> dict[str, str]:
    declared = _table_schema((definition_metadata or {}).get(COLUMN_SCHEMA_KEY))
    if declared is None:
        return {}
    return {c.name: c.description for c in declared.columns if c.description}


def column_lineage(
    schema: pa.Schema,
    definition_metadata: Mapping[str, Any] | None,
    upstream_columns: Mapping[dg.AssetKey, Sequence[str]],
) -> dg.TableColumnLineage | None:
    """Each written column's upstream columns: as declared, else the upstream inputs' columns
    of the same name (a column carried through a filter or a join keeps its name)."""
    declared = (definition_metadata or {}).get(DECLARED_LINEAGE_KEY) or {}
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for name in schema.names:
        if name in declared:
            deps[name] = [_column_dep(text) for text in declared[name]]
            continue
        found = [
            dg.TableColumnDep(asset_key=key, column_name=name)
            for key, columns in upstream_columns.items()
            if name in columns
        ]
        if found:
            deps[name] = found
    return dg.TableColumnLineage(deps_by_column=deps) if deps else None


def _column_dep(text: str) -> dg.TableColumnDep:
    key, _, column = text.rpartition(".")
    return dg.TableColumnDep(asset_key=dg.AssetKey.from_user_string(key), column_name=column)


def _table_schema(value: Any) -> dg.TableSchema | None:
    if isinstance(value, dg.TableSchemaMetadataValue):
        return value.schema
    return value if isinstance(value, dg.TableSchema) else None


def profile_metadata(profile: Mapping[str, ColumnProfile], rows: int) -> dict[str, object]:
    """A partition's numeric columns as numbers the UI plots over partitions: null fraction,
    min and max."""
    metadata: dict[str, object] = {}
    for name, column in profile.items():
        metadata[f"profile/{name}/null_fraction"] = (
            round(column.null_count / rows, 6) if rows else 0.0
        )
        if column.min is not None:
            metadata[f"profile/{name}/min"] = dg.MetadataValue.float(column.min)
            metadata[f"profile/{name}/max"] = dg.MetadataValue.float(column.max)
    return metadata


def materialization_metadata(
    result: WriteResult,
    asset_key: dg.AssetKey,
    definition_metadata: Mapping[str, Any] | None = None,
    upstream_columns: Mapping[dg.AssetKey, Sequence[str]] | None = None,
) -> dict[str, object]:
    """Metadata of the whole write: what every event carries and the run's summary."""
    return {
        **shared_metadata(result, asset_key),
        **summary_metadata(result, definition_metadata, upstream_columns),
    }


def shared_metadata(result: WriteResult, asset_key: dg.AssetKey) -> dict[str, object]:
    """What every partition's event of a range run carries: where the rows are (the table and
    the version that committed them) and the write's warnings, which may name that partition
    (one the output emptied). Small, so repeating it costs little."""
    metadata: dict[str, object] = {
        "dagster/table_name": ".".join(asset_key.path),
        "dagster/uri": dg.MetadataValue.text(result.table_uri),
        "dagster/storage_kind": result.storage_kind,
        **_version_metadata(result),
    }
    if result.warnings:
        metadata["warnings"] = dg.MetadataValue.md(
            "\n".join(f"- {warning}" for warning in result.warnings)
        )
    return metadata


def summary_metadata(
    result: WriteResult,
    definition_metadata: Mapping[str, Any] | None = None,
    upstream_columns: Mapping[dg.AssetKey, Sequence[str]] | None = None,
) -> dict[str, object]:
    """What the write did as a whole and the table it left: its schema, lineage, row count and
    the run's totals. One event per run carries it (`summary_partition`): on a year's backfill,
    repeating the schema on 365 events cost about a tenth of the run in Dagster's event log."""
    metadata: dict[str, object] = {
        "dagster/row_count": result.table_row_count,
        COLUMN_SCHEMA_KEY: column_schema(result.schema, column_descriptions(definition_metadata)),
        "rows_written": result.rows_written,
        "files_written": result.files_written,
        "bytes_written": result.bytes_written,
        "write_duration_s": round(result.duration_s, 3),
        "rows_per_second": round(result.rows_per_second, 1),
    }
    lineage = column_lineage(result.schema, definition_metadata, upstream_columns or {})
    if lineage is not None:
        metadata[COLUMN_LINEAGE_KEY] = lineage
    if not result.partitions and result.profile:
        metadata.update(profile_metadata(result.profile, result.rows_written))
    dashboard = ray_dashboard_url()
    if dashboard:
        metadata["ray/dashboard"] = dg.MetadataValue.url(dashboard)
    return metadata


def summary_partition(
    partitions_def: dg.PartitionsDefinition | None, partition_keys: Sequence[str] | None
) -> str | None:
    """The one partition of a range run whose event carries the run's summary, or None when
    every event must carry it.

    Dagster records a range run's events in the order of the run's partition subset, and the UI
    shows the asset's latest event (the last recorded) as its current state: for time windows
    that is the range's last key. Other partitions definitions keep their subsets as sets, in no
    order, so there every event carries the summary, the latest among them."""
    if not partition_keys or len(partition_keys) < 2:
        return None
    if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return None
    return partition_keys[-1]


def _version_metadata(result: WriteResult) -> dict[str, object]:
    """The table version the write made, under its store's keys."""
    if result.storage_kind == "parquet":
        return {
            "parquet/manifest_version": result.table_version,
            "parquet/published": result.committed,
        }
    return {
        "delta/table_version": result.table_version,
        "delta/committed": result.committed,
        "delta/commit_attempts": result.commit_attempts,
    }


def partition_metadata(stats: PartitionWriteStats) -> dict[str, object]:
    """Metadata of one partition of the write."""
    return {
        "dagster/partition_row_count": stats.rows,
        "partition_files": stats.files,
        "partition_bytes": stats.bytes,
        **profile_metadata(stats.profile, stats.rows),
    }


def partition_row_counts(result: WriteResult, keys: Sequence[str]) -> dict[str, int]:
    return {key: result.partitions[key].rows for key in keys if key in result.partitions}


def declared_column_types(definition_metadata: Mapping[str, Any] | None) -> dict[str, pa.DataType]:
    """Column types an asset declares in `dagster/column_schema`, as Arrow types.

    They type the columns a pipeline leaves all-null (Arrow's `null`, which Delta would store as
    `void`). Type names are `str(arrow_type)` (what ray_assets writes to the same key after a
    materialization) or common SQL names; a name neither understands is ignored.
    """
    declared = _table_schema((definition_metadata or {}).get(COLUMN_SCHEMA_KEY))
    if declared is None:
        return {}
    types = {column.name: arrow_type_from_name(column.type) for column in declared.columns}
    return {name: kind for name, kind in types.items() if kind is not None}
