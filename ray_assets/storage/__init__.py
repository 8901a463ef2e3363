"""Storage: tables that Ray pipelines stream into and read back, one commit per write.

`DeltaStore` keeps a Delta table (a transaction log); `ParquetStore` keeps plain Hive-partitioned
Parquet whose partitions are published by manifests. They share the write's first phase
(`staging`: the task-side file writing in `files_sink`, the checks) and the read side
(`files_source`); each has its own commit step (`delta_commit`, `parquet_manifest`).
"""

from typing import TYPE_CHECKING

from ray_assets._lazy import lazy_exports

if TYPE_CHECKING:
    from ray_assets.storage.delta_store import DeltaStore
    from ray_assets.storage.parquet_store import ParquetStore
    from ray_assets.storage.write_result import PartitionWriteStats, WriteResult


__all__ = ["DeltaStore", "ParquetStore", "PartitionWriteStats", "WriteResult"]

# A store loads on first use, so that a worker unpickling a reader or the sink imports only
# the module it needs.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DeltaStore": "ray_assets.storage.delta_store",
        "ParquetStore": "ray_assets.storage.parquet_store",
        "PartitionWriteStats": "ray_assets.storage.write_result",
        "WriteResult": "ray_assets.storage.write_result",
    },
)
