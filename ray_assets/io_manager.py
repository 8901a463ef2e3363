"""`DeltaIOManager` and `ParquetIOManager`: Dagster's `handle_output` / `load_input` adapted to
`DeltaStore` and `ParquetStore`.

Both know where each asset's table lives (`<root_uri>/<key path>`) and turn Dagster's contexts
into `PartitionSlice`s; the store does the rest. It follows the conventions of
Dagster's database IO managers: `partition_expr` metadata on the producing asset names the
partition column(s), `columns` metadata on an input projects columns, and the input's type
annotation picks what it receives (a lazy `ray.data.Dataset` unless it asks for a
`pyarrow.Table` or `pandas.DataFrame`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
import pyarrow as pa
from pydantic import Field

from ray_assets.conversions import empty_input, from_dataset, to_dataset
from ray_assets.errors import RayAssetsError
from ray_assets.io_slices import instance_of, output_partitions, slice_to_load, slice_to_write
from ray_assets.metadata import (
    SCHEMA_EVOLUTION_KEY,
    declared_column_types,
    materialization_metadata,
    partition_metadata,
)
from ray_assets.partition_slice import PartitionColumn
from ray_assets.storage.delta_store import DeltaStore
from ray_assets.storage.filesystem import join_uri
from ray_assets.storage.schema_evolution import SchemaEvolution, refuse_unknown_policy
from ray_assets.storage.write_result import WriteResult

if TYPE_CHECKING:
    from ray_assets.checks import Check
    from ray_assets.storage.parquet_store import ParquetStore


class TableIOManager(dg.ConfigurableIOManager):
    """What the table IO managers share: where tables live, how a materialization is written
    (`write_asset`, also `ray_asset`'s entry point) and how inputs are loaded. A subclass says
    which store keeps the tables (`store_at`)."""

    root_uri: str = Field(
        description="Folder (local path or object-store URI) under which each asset's table lives, "
        "at <root_uri>/<asset key path>."
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="delta-rs storage options for object stores (endpoint, region, credentials). "
        "Pass secrets with dagster.EnvVar in the resource config, never as literals.",
    )
    on_concurrent_write: Literal["warn", "fail"] = Field(
        default="warn",
        description="When another run committed some of the same partitions while this run "
        "wrote them: 'warn' replaces that run's rows (the last writer wins) and says so in the "
        "run's log and the materialization's `warnings` metadata; 'fail' commits nothing and "
        "fails the run with ConcurrentWriteError. Either way a partition never holds two runs' "
        "rows.",
    )

    schema_evolution: SchemaEvolution = Field(
        default="strict",
        description="What a write may change in its table's schema, unless the asset says "
        "otherwise (ray_asset(schema_evolution=...) or its 'schema_evolution' metadata): "
        "'strict' refuses any difference with a column-by-column diff; 'add_columns' adds new "
        "nullable columns; 'widen' also widens types losslessly (int32 -> int64, float32 -> "
        "float64); 'overwrite' replaces the schema, by a write of the whole table only. Values "
        "are never cast implicitly.",
    )

    def table_uri(self, asset_key: dg.AssetKey) -> str:
        """Where the table of `asset_key` lives."""
        return join_uri(self.root_uri, *asset_key.path)

    def store_for(self, asset_key: dg.AssetKey) -> DeltaStore | ParquetStore:
        return self.store_at(self.table_uri(asset_key))

    def store_at(self, table_uri: str) -> DeltaStore | ParquetStore:
        """The table at `table_uri` with this IO manager's storage options and commit policy."""
        raise NotImplementedError

    def external_store(self, table_uri: str) -> DeltaStore:
        """An external Delta table (`external_delta_table`) at `table_uri`, read with this IO
        manager's storage options."""
        return DeltaStore(table_uri, storage_options=self.storage_options)

    # ------------------------------------------------------------------ writing
    def write_asset(
        self,
        obj: Any,
        *,
        asset_key: dg.AssetKey,
        partitions_def: dg.PartitionsDefinition | None,
        partition_keys: Sequence[str] | None,
        partition_column: PartitionColumn | None,
        write_id: str,
        dynamic_partitions_store: Any = None,
        definition_metadata: Mapping[str, Any] | None = None,
        checks: Sequence[Check] = (),
        log: Any = None,
    ) -> WriteResult:
        """Store one materialization: the single entry point of both `ray_asset` and `handle_output`.

        `definition_metadata` is the asset's; its `dagster/column_schema` types the columns a
        pipeline leaves all-null, its `schema_evolution` overrides this IO manager's. `checks`
        are decided before the commit (`CheckFailedError` when a blocking one fails); what they
        decided is `WriteResult.gate_record`. `log` (the step's Dagster log) gets the
        pipeline's progress while it runs.
        """
        partition_slice = slice_to_write(
            asset_key, partitions_def, partition_keys, partition_column, dynamic_partitions_store
        )
        dataset = to_dataset(obj, partition_slice.describe())
        gate = None
        if checks:
            from ray_assets.checks.gate import CheckGate

            gate = CheckGate(checks)
        evolution = (definition_metadata or {}).get(SCHEMA_EVOLUTION_KEY) or self.schema_evolution
        from ray_assets.progress import progress_to, written_line

        what = partition_slice.describe()
        with progress_to(log, what):
            result = self.store_for(asset_key).write(
                dataset,
                partition_slice,
                write_id=write_id,
                declared_types=declared_column_types(definition_metadata),
                schema_evolution=refuse_unknown_policy(evolution),
                observer=gate.observer() if gate is not None else None,
                gate=gate,
            )
        if log is not None:
            log.info(
                written_line(
                    what,
                    result.rows_written,
                    result.bytes_written,
                    result.duration_s,
                    result.table_version,
                )
            )
        return result

    def upstream_columns(self, asset_keys: Sequence[dg.AssetKey]) -> dict[dg.AssetKey, list[str]]:
        """The columns of the upstream tables this IO manager holds (for derived lineage)."""
        found = {}
        for key in asset_keys:
            schema = self.store_for(key).schema()
            if schema is not None:
                found[key] = schema.names
        return found

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        name = context.asset_key.to_user_string()
        if obj is None:
            # Dagster's own database IO managers refuse it too: a materialization with no table
            # behind it would tell every downstream asset and sensor that data exists.
            raise RayAssetsError(
                f"Asset '{name}' returned None, so there is nothing to store in its table. "
                "Return a ray.data.Dataset, pyarrow.Table or pandas.DataFrame; if the asset "
                "stores its data itself, annotate its return type '-> None' (Dagster then does "
                "not call the IO manager)."
            )
        partitions_def, keys = output_partitions(context)
        result = self.write_asset(
            obj,
            asset_key=context.asset_key,
            partitions_def=partitions_def,
            partition_keys=keys,
            partition_column=(context.definition_metadata or {}).get("partition_expr"),
            write_id=context.run_id,
            dynamic_partitions_store=instance_of(context),
            definition_metadata=context.definition_metadata,
            log=context.log,
        )
        for warning in result.warnings:
            context.log.warning(f"{name}: {warning}")
        metadata = materialization_metadata(result, context.asset_key, context.definition_metadata)
        if keys and len(keys) == 1:
            metadata.update(partition_metadata(result.partitions[keys[0]]))
        elif keys:
            # An IO manager cannot attach metadata per partition; ray_asset can.
            metadata["partition_row_counts"] = dg.MetadataValue.json(
                {key: result.partitions[key].rows for key in keys}
            )
        context.add_output_metadata(metadata)

    # ------------------------------------------------------------------ loading
    def load_input(self, context: dg.InputContext) -> Any:
        columns = (context.definition_metadata or {}).get("columns")
        upstream = context.upstream_output
        external = ((upstream.definition_metadata if upstream else None) or {}).get(
            "ray_assets/table_uri"
        )  # an external table (`external_delta_table`) lives where it says
        store = self.external_store(external) if external else self.store_for(context.asset_key)
        if context.has_asset_partitions and not context.asset_partition_keys:
            # The mapping selects no partition (a self-dependent asset's first partition): an
            # empty input, as Dagster's database IO managers give.
            upstream = context.upstream_output
            upstream_metadata = (upstream.definition_metadata if upstream else None) or {}
            schema = _empty_input_schema(store, upstream_metadata)
            return empty_input(schema, columns, context.dagster_type.typing_type)
        dataset = store.read(slice_to_load(context), columns)
        return from_dataset(dataset, context.dagster_type.typing_type)


def _empty_input_schema(
    store: DeltaStore | ParquetStore, upstream_metadata: Mapping[str, Any]
) -> pa.Schema:
    """The table's schema, or before the first write the asset's declared columns (if any)."""
    schema = store.schema()
    if schema is not None:
        return schema
    return pa.schema(list(declared_column_types(upstream_metadata).items()))


class DeltaIOManager(TableIOManager):
    """Stores each asset as a Delta table under `root_uri`, one atomic commit per materialization."""

    max_commit_attempts: int = Field(
        default=8,
        description="Commit attempts (with jittered backoff) when concurrent writers of other "
        "partitions keep winning the race.",
    )

    def store_at(self, table_uri: str) -> DeltaStore:
        return DeltaStore(
            table_uri,
            storage_options=self.storage_options,
            max_commit_attempts=self.max_commit_attempts,
            on_concurrent_write=self.on_concurrent_write,
        )

    def external_store(self, table_uri: str) -> DeltaStore:
        return self.store_at(table_uri)


class ParquetIOManager(TableIOManager):
    """Stores each asset as Hive-partitioned Parquet under `root_uri`: each materialization writes
    fresh files and publishes every partition it wrote by replacing that partition's manifest in
    one put (`ray_assets.storage.parquet_store`). Run `ParquetStore.cleanup` (or the
    maintenance job) to reclaim replaced files."""

    def store_at(self, table_uri: str) -> ParquetStore:
        from ray_assets.storage.parquet_store import ParquetStore

        return ParquetStore(
            table_uri,
            storage_options=self.storage_options,
            on_concurrent_write=self.on_concurrent_write,
        )
