"""Where the storage tests' tables live, and the orders they write: shared by the Delta, Parquet,
object-store, maintenance and fault suites (the `s3` and `lake` fixtures are in conftest)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np

from ray_assets import DeltaStore, PartitionSlice

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


@dataclass
class Lake:
    """Where a test's tables live: a local folder, or a prefix of an object-store bucket."""

    root: str
    storage_options: dict[str, str] = field(default_factory=dict)

    def uri(self, name: str) -> str:
        return f"{self.root}/{name}"

    def store(self, name: str, **kwargs: Any) -> DeltaStore:
        return DeltaStore(self.uri(name), storage_options=self.storage_options, **kwargs)


def orders(days: list[str], rows_per_day: int = 50, offset: int = 0):  # noqa: ANN201
    """`rows_per_day` orders per day in 3 blocks; order i falls on `days[i % len(days)]`."""
    import ray.data

    def make(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = batch["id"]
        return {
            "order_id": ids + offset,
            "order_date": np.array(days, dtype=object)[ids % len(days)],
            "amount": ids * 1.5,
        }

    return ray.data.range(rows_per_day * len(days), override_num_blocks=3).map_batches(make)


def daily(days: list[str]) -> PartitionSlice:
    return PartitionSlice.from_keys(DAILY, days, "order_date", asset_key="orders")


def rows_by_day(store: DeltaStore) -> dict[str, int]:
    """Rows per partition from the Delta log's add actions (no data scan)."""
    counts: dict[str, int] = defaultdict(int)
    for data_file in store.data_files(PartitionSlice.unpartitioned("orders")):
        counts[data_file.partition_values["order_date"]] += data_file.num_rows or 0
    return dict(counts)
