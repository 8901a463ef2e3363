"""ray_assets: Dagster software-defined assets that run as Ray Data streaming pipelines.

Each asset's output is a lazy `ray.data.Dataset` that is streamed into a partitioned Delta
table in one atomic commit per materialization, and loaded back lazily, partition by
partition, for the assets downstream. Importing this package does not import Ray or
deltalake; they load when a resource starts or a table is touched.
"""

from typing import TYPE_CHECKING

from ray_assets._lazy import lazy_exports

if TYPE_CHECKING:
    from ray_assets import checks
    from ray_assets.actor_pools import ActorPool, gpu_pool, size_gpu_pool
    from ray_assets.aggregates import ROWS, aggregate_by
    from ray_assets.alerts import AlertSink, FailureAlert, run_failure_alerts
    from ray_assets.asset import ray_asset
    from ray_assets.components import RayTableAsset
    from ray_assets.errors import (
        ActorPoolError,
        CheckFailedError,
        CommitError,
        ConcurrentWriteError,
        PartitionColumnError,
        PartitionKeyError,
        PipelineFailedError,
        RayAssetsError,
        SchemaMismatchError,
        StrayPartitionValuesError,
        UnstorableValueError,
        UnsupportedTableError,
    )
    from ray_assets.external_delta import external_delta_table
    from ray_assets.io_manager import DeltaIOManager, ParquetIOManager
    from ray_assets.joins import broadcast_join, shuffle_partitions
    from ray_assets.lookups import lookup
    from ray_assets.maintenance import maintain_table, table_maintenance_job
    from ray_assets.model_io_manager import ModelArtifactIOManager
    from ray_assets.models import ModelArtifact, record_model, save_model
    from ray_assets.partition_slice import PartitionSlice
    from ray_assets.ray_resource import RayResource
    from ray_assets.reads import read_parquet_files
    from ray_assets.runs import materialize_partition_range, partition_range_tags
    from ray_assets.storage import DeltaStore, ParquetStore, PartitionWriteStats, WriteResult
    from ray_assets.unity_catalog import UnityCatalogError, unity_catalog_table

_EXPORTS = {
    "AlertSink": "ray_assets.alerts",
    "FailureAlert": "ray_assets.alerts",
    "run_failure_alerts": "ray_assets.alerts",
    "ActorPool": "ray_assets.actor_pools",
    "gpu_pool": "ray_assets.actor_pools",
    "size_gpu_pool": "ray_assets.actor_pools",
    "ActorPoolError": "ray_assets.errors",
    "ModelArtifact": "ray_assets.models",
    "ModelArtifactIOManager": "ray_assets.model_io_manager",
    "record_model": "ray_assets.models",
    "save_model": "ray_assets.models",
    "ROWS": "ray_assets.aggregates",
    "aggregate_by": "ray_assets.aggregates",
    "ray_asset": "ray_assets.asset",
    "RayTableAsset": "ray_assets.components",
    "CheckFailedError": "ray_assets.errors",
    "CommitError": "ray_assets.errors",
    "ConcurrentWriteError": "ray_assets.errors",
    "PartitionColumnError": "ray_assets.errors",
    "PartitionKeyError": "ray_assets.errors",
    "PipelineFailedError": "ray_assets.errors",
    "RayAssetsError": "ray_assets.errors",
    "SchemaMismatchError": "ray_assets.errors",
    "StrayPartitionValuesError": "ray_assets.errors",
    "UnstorableValueError": "ray_assets.errors",
    "UnsupportedTableError": "ray_assets.errors",
    "DeltaIOManager": "ray_assets.io_manager",
    "ParquetIOManager": "ray_assets.io_manager",
    "external_delta_table": "ray_assets.external_delta",
    "unity_catalog_table": "ray_assets.unity_catalog",
    "maintain_table": "ray_assets.maintenance",
    "table_maintenance_job": "ray_assets.maintenance",
    "UnityCatalogError": "ray_assets.unity_catalog",
    "broadcast_join": "ray_assets.joins",
    "checks": "ray_assets.checks",
    "shuffle_partitions": "ray_assets.joins",
    "lookup": "ray_assets.lookups",
    "PartitionSlice": "ray_assets.partition_slice",
    "RayResource": "ray_assets.ray_resource",
    "read_parquet_files": "ray_assets.reads",
    "materialize_partition_range": "ray_assets.runs",
    "partition_range_tags": "ray_assets.runs",
    "DeltaStore": "ray_assets.storage",
    "ParquetStore": "ray_assets.storage",
    "PartitionWriteStats": "ray_assets.storage",
    "WriteResult": "ray_assets.storage",
}
"""Where each public name lives. The package imports them on first use (PEP 562): Ray
workers unpickle functions of `ray_assets.aggregates` or `ray_assets.storage.*` by module,
and an eager package would make each of them import Dagster first (about 1 s per worker)."""


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__version__ = "0.1.0"

__all__ = [
    "ActorPool",
    "ActorPoolError",
    "AlertSink",
    "FailureAlert",
    "run_failure_alerts",
    "ModelArtifact",
    "ModelArtifactIOManager",
    "gpu_pool",
    "record_model",
    "save_model",
    "size_gpu_pool",
    "ROWS",
    "CheckFailedError",
    "CommitError",
    "ConcurrentWriteError",
    "DeltaIOManager",
    "DeltaStore",
    "ParquetIOManager",
    "ParquetStore",
    "PartitionColumnError",
    "PartitionKeyError",
    "PartitionSlice",
    "PartitionWriteStats",
    "PipelineFailedError",
    "RayAssetsError",
    "RayResource",
    "RayTableAsset",
    "SchemaMismatchError",
    "StrayPartitionValuesError",
    "UnityCatalogError",
    "UnstorableValueError",
    "UnsupportedTableError",
    "WriteResult",
    "aggregate_by",
    "broadcast_join",
    "checks",
    "external_delta_table",
    "lookup",
    "maintain_table",
    "materialize_partition_range",
    "partition_range_tags",
    "ray_asset",
    "table_maintenance_job",
    "unity_catalog_table",
    "read_parquet_files",
    "shuffle_partitions",
]
