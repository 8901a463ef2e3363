"""`SqlIOManager`: assets stored as SQL tables, with the conventions of `DeltaIOManager`.

Each asset lives in the table `<schema>.<key path joined by __>`; `partition_expr` metadata on
the producing asset (or `partition_column` on a `ray_asset`) names the partition column(s);
`columns` metadata on an input projects columns; the input's annotation picks what it receives
(a lazy `ray.data.Dataset` unless it asks for a `pyarrow.Table` or `pandas.DataFrame`). A
materialization replaces exactly its partitions' rows, in one transaction (`SqlDatabase.write`);
a single-run range is one transaction for every key in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from ray_assets.connectors.sql.resource import SqlDatabase
from ray_assets.conversions import from_dataset, to_dataset
from ray_assets.errors import RayAssetsError
from ray_assets.io_slices import instance_of, output_partitions, slice_to_load, slice_to_write
from ray_assets.partition_slice import PartitionColumn, PartitionSlice


class SqlIOManager(dg.ConfigurableIOManager):
    """Stores each asset as a table of `database`, one transaction per materialization."""

    database: SqlDatabase = Field(description="The database the tables live in.")
    db_schema: str | None = Field(
        default=None, description="The schema (namespace) of the tables; the default one if None."
    )
    read_shards: int = Field(
        default=1,
        description="Read tasks per input: more than 1 splits an input by its first partition "
        "column's hash (PostgreSQL) so that a range of partitions loads in parallel.",
    )

    def table_name(self, asset_key: dg.AssetKey) -> str:
        name = "__".join(asset_key.path)
        return f"{self.db_schema}.{name}" if self.db_schema else name

    def write_asset(
        self,
        obj: Any,
        *,
        asset_key: dg.AssetKey,
        partitions_def: dg.PartitionsDefinition | None,
        partition_keys: Sequence[str] | None,
        partition_column: PartitionColumn | None,
        dynamic_partitions_store: Any = None,
    ) -> tuple[int, PartitionSlice]:
        """Replace the rows of the keys' partitions with `obj`; the rows written and the slice."""
        partition_slice = slice_to_write(
            asset_key, partitions_def, partition_keys, partition_column, dynamic_partitions_store
        )
        data = to_dataset(obj, partition_slice.describe())
        rows = self.database.write(data, self.table_name(asset_key), partition=partition_slice)
        return rows, partition_slice

    def materialize_output(
        self,
        context: dg.AssetExecutionContext,
        output: Any,
        partition_column: PartitionColumn | None,
    ) -> dg.MaterializeResult:
        """What `ray_asset` calls to store its output here."""
        partitions_def = context.assets_def.partitions_def
        rows, partition_slice = self.write_asset(
            output,
            asset_key=context.asset_key,
            partitions_def=partitions_def,
            partition_keys=list(context.partition_keys) if partitions_def is not None else None,
            partition_column=partition_column,
            dynamic_partitions_store=context.instance,
        )
        table = self.table_name(context.asset_key)
        context.log.info(
            f"{context.asset_key.to_user_string()}: {rows} rows replaced "
            f"{partition_slice.describe()} in table {table}"
        )
        return dg.MaterializeResult(metadata=self._metadata(rows, table))

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            raise RayAssetsError(
                f"Asset '{context.asset_key.to_user_string()}' returned None: nothing to store "
                "in its SQL table. Return a ray.data.Dataset, pyarrow.Table or pandas.DataFrame."
            )
        partitions_def, keys = output_partitions(context)
        rows, _ = self.write_asset(
            obj,
            asset_key=context.asset_key,
            partitions_def=partitions_def,
            partition_keys=keys,
            partition_column=(context.definition_metadata or {}).get("partition_expr"),
            dynamic_partitions_store=instance_of(context),
        )
        context.add_output_metadata(self._metadata(rows, self.table_name(context.asset_key)))

    def load_input(self, context: dg.InputContext) -> Any:
        columns = (context.definition_metadata or {}).get("columns")
        partition_slice = slice_to_load(context)
        shard_column = (
            partition_slice.columns[0] if self.read_shards > 1 and partition_slice.columns else None
        )
        dataset = self.database.read(
            self.table_name(context.asset_key),
            columns=columns,
            partition=partition_slice,
            shard_column=shard_column,
            shards=self.read_shards,
            shard_by="hash",
        )
        return from_dataset(dataset, context.dagster_type.typing_type)

    def _metadata(self, rows: int, table: str) -> dict[str, Any]:
        return {
            "dagster/row_count": dg.MetadataValue.int(rows),
            "dagster/table_name": dg.MetadataValue.text(table),
            "database": dg.MetadataValue.text(self.database.redacted_url),
        }
