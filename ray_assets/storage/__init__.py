"""Storage: tables that Ray pipelines stream into and read back, one commit per write."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray_assets.storage.delta_store import DeltaStore, PartitionWriteStats, WriteResult


def __getattr__(name: str) -> Any:
    """The store loads on first use, so that a worker unpickling a reader or the sink imports only
    the module it needs."""
    if name not in __all__:
        raise AttributeError(f"module 'ray_assets.storage' has no attribute {name!r}")
    value = getattr(importlib.import_module("ray_assets.storage.delta_store"), name)
    globals()[name] = value
    return value


__all__ = ["DeltaStore", "PartitionWriteStats", "WriteResult"]
