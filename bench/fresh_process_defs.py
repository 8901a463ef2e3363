"""The code location of `bench/fresh_process.py`: the reference `raw_orders` asset with Ray either
embedded in the run's process or on the shared local head (`BENCH_RAY=embedded|shared`)."""

from __future__ import annotations

import os

import dagster as dg

from definitions.assets import raw_orders
from definitions.sources import OrderSource
from ray_assets import DeltaIOManager, RayResource

defs = dg.Definitions(
    assets=[raw_orders],
    resources={
        "ray": RayResource(shared_head=os.environ.get("BENCH_RAY") == "shared"),
        "delta_io_manager": DeltaIOManager(root_uri=os.environ["RAY_ASSETS_TABLE_ROOT"]),
        "order_source": OrderSource(rows_per_day=int(os.environ["RAY_ASSETS_ROWS_PER_DAY"])),
    },
    executor=dg.in_process_executor,
)
