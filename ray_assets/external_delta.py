"""Delta tables this project did not write, as Dagster observable source assets.

`external_delta_table("orders_feed", "s3://partner/orders", partition_column="day",
partitions_def=daily)` declares a table another system writes. Each observation (a schedule, a
sensor, or "Observe" in the UI) reads only the table's log. An unpartitioned table reports its
version as the data version, with its row count and last commit time as metadata; a
partitioned one reports a data version per partition (a digest of that partition's files), as
Dagster requires, so a downstream partition reacts only when its own upstream day changed.
A `ray_asset` that takes it as an input gets a lazy Dataset of exactly the partitions it asks
for (pruned from the log) and the columns it projects (`dg.AssetIn(metadata={"columns":
[...]})`), read by `DeltaIOManager` like its own tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from ray_assets.asset import DEFAULT_IO_MANAGER_KEY

TABLE_URI_KEY = "ray_assets/table_uri"
"""Definition metadata key: where an external table lives (instead of `<root_uri>/<key>`)."""


def external_delta_table(
    name: str,
    table_uri: str,
    *,
    partitions_def: dg.PartitionsDefinition | None = None,
    partition_column: str | Mapping[str, str] | None = None,
    io_manager_key: str = DEFAULT_IO_MANAGER_KEY,
    description: str | None = None,
    group_name: str | None = None,
    key_prefix: str | list[str] | None = None,
) -> dg.SourceAsset:
    """An observable source asset for the Delta table at `table_uri`, read through the
    `DeltaIOManager` at `io_manager_key` (its `storage_options` reach the table)."""
    from ray_assets.storage.filesystem import redact_uri

    if redact_uri(table_uri) != table_uri:
        raise ValueError(
            f"external_delta_table('{name}'): give the table's URI without credentials or query "
            f"({redact_uri(table_uri)}); credentials go in the IO manager's storage_options"
        )
    metadata: dict[str, Any] = {TABLE_URI_KEY: table_uri, "dagster/uri": table_uri}
    if partition_column is not None:
        metadata["partition_expr"] = (
            dict(partition_column) if isinstance(partition_column, Mapping) else partition_column
        )

    @dg.observable_source_asset(
        name=name,
        key_prefix=key_prefix,
        partitions_def=partitions_def,
        io_manager_key=io_manager_key,
        metadata=metadata,
        description=description or f"The Delta table at {table_uri}, written elsewhere.",
        group_name=group_name,
        required_resource_keys={io_manager_key},
        kinds={"deltalake"},
    )
    def observe(context: dg.AssetExecutionContext) -> Any:
        store = getattr(context.resources, io_manager_key).external_store(table_uri)
        result = observation(store)
        if partitions_def is None:
            return result
        context.log.info(
            f"{name}: version {result.metadata['delta/table_version']}, "
            f"{result.metadata['dagster/row_count']} rows"
        )
        return partition_versions(store, partitions_def, partition_column, name, context.instance)

    return observe


def partition_versions(
    store: Any,
    partitions_def: dg.PartitionsDefinition,
    partition_column: str | Mapping[str, str] | None,
    name: str,
    instance: Any,
) -> dg.DataVersionsByPartition:
    """A data version per partition that holds rows: a digest of its files in the log, so a
    downstream partition reacts only when its own upstream partition changed."""
    import hashlib

    from ray_assets.partition_slice import PartitionSlice

    keys = partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    table = store.open_table()
    everything = PartitionSlice.from_keys(
        partitions_def, keys, partition_column, asset_key=name, dynamic_partitions_store=instance
    )
    stored = everything.stored_values(everything.column_types(store.table_schema(table)))
    key_of = dict(zip(stored, keys, strict=True))
    digests: dict[str, Any] = {}
    for data_file in store.data_files(PartitionSlice.unpartitioned(name)):
        values = tuple(data_file.partition_values.get(c) for c in everything.columns)
        key = key_of.get(values)
        if key is not None:
            digest = digests.setdefault(key, hashlib.sha256())
            digest.update(f"{data_file.path}\x1f{data_file.size_bytes}\x1e".encode())
    return dg.DataVersionsByPartition(
        {key: dg.DataVersion(digest.hexdigest()[:16]) for key, digest in digests.items()}
    )


def observation(store: Any) -> dg.ObserveResult:
    """The table's version (its data version), rows and last commit, from its log only."""
    from ray_assets.errors import RayAssetsError
    from ray_assets.storage.filesystem import redact_uri

    table = store.open_table()
    if table is None:
        raise RayAssetsError(f"table {redact_uri(store.table_uri)}: no Delta table exists there")
    version = table.version()
    actions = pa.table(table.get_add_actions(flatten=True))
    rows = int(pc.sum(actions.column("num_records")).as_py() or 0) if actions.num_rows else 0
    history = table.history(1)
    committed_ms = history[0].get("timestamp") if history else None
    metadata: dict[str, Any] = {
        "delta/table_version": version,
        "dagster/row_count": rows,
        "data_files": actions.num_rows,
        "dagster/uri": dg.MetadataValue.text(redact_uri(store.table_uri)),
    }
    if committed_ms is not None:
        committed = dt.datetime.fromtimestamp(committed_ms / 1000, tz=dt.timezone.utc)
        metadata["last_commit_time"] = dg.MetadataValue.timestamp(committed)
    return dg.ObserveResult(data_version=dg.DataVersion(str(version)), metadata=metadata)
