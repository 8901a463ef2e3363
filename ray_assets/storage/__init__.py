"""Storage: tables that Ray pipelines stream into and read back, one commit per write."""

from ray_assets.storage.delta_store import DeltaStore, PartitionWriteStats, WriteResult

__all__ = ["DeltaStore", "PartitionWriteStats", "WriteResult"]
