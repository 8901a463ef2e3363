"""Storage: tables that Ray pipelines stream into and read back, one commit per write."""

from typing import TYPE_CHECKING

from ray_assets._lazy import lazy_exports

if TYPE_CHECKING:
    from ray_assets.storage.delta_store import DeltaStore, PartitionWriteStats, WriteResult


__all__ = ["DeltaStore", "PartitionWriteStats", "WriteResult"]

# The store loads on first use, so that a worker unpickling a reader or the sink imports only
# the module it needs.
__getattr__, __dir__ = lazy_exports(
    __name__, dict.fromkeys(__all__, "ray_assets.storage.delta_store")
)
