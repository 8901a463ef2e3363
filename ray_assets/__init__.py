"""ray_assets: Dagster software-defined assets that run as Ray Data streaming pipelines.

Each asset's output is a lazy `ray.data.Dataset` that is streamed into a partitioned Delta
table in one atomic commit per materialization, and loaded back lazily, partition by
partition, for the assets downstream. Importing this package does not import Ray or
deltalake; they load when a resource starts or a table is touched.
"""

from ray_assets.aggregates import ROWS, aggregate_by
from ray_assets.asset import ray_asset
from ray_assets.errors import (
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
from ray_assets.io_manager import DeltaIOManager
from ray_assets.joins import broadcast_join, shuffle_partitions
from ray_assets.partition_slice import PartitionSlice
from ray_assets.ray_resource import RayResource
from ray_assets.reads import read_parquet_files
from ray_assets.runs import materialize_partition_range, partition_range_tags
from ray_assets.storage import DeltaStore, PartitionWriteStats, WriteResult

__version__ = "0.1.0"

__all__ = [
    "ROWS",
    "CommitError",
    "ConcurrentWriteError",
    "DeltaIOManager",
    "DeltaStore",
    "PartitionColumnError",
    "PartitionKeyError",
    "PartitionSlice",
    "PartitionWriteStats",
    "PipelineFailedError",
    "RayAssetsError",
    "RayResource",
    "SchemaMismatchError",
    "StrayPartitionValuesError",
    "UnstorableValueError",
    "UnsupportedTableError",
    "WriteResult",
    "aggregate_by",
    "broadcast_join",
    "materialize_partition_range",
    "partition_range_tags",
    "ray_asset",
    "read_parquet_files",
    "shuffle_partitions",
]
