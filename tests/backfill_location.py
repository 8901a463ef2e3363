"""A second code location for the daemon tests: a multi-run backfill whose run dies halfway.

`backfill_orders` and `backfill_totals` are daily `ray_asset`s with `BackfillPolicy.multi_run`,
so a backfill of 100 days is 10 runs of 10 days, each materializing both assets. The first
attempt of the run whose days hold `KILLED_DAY` kills its own process with SIGKILL as its second
step starts: its `backfill_orders` days are committed, its `backfill_totals` days are not, and
nothing of Dagster's cleanup runs, as when a machine loses the process. Its retry (the instance's
run retries, re-executing from failure) must finish the run without writing the committed days
again.
"""

from __future__ import annotations

import os
import signal

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from definitions.generator import make_orders
from ray_assets import DeltaIOManager, RayResource, ray_asset

ROWS_PER_DAY = 40
RUN_DAYS = 10
KILLED_DAY = "2025-01-20"
"""The last of the second run's days (01-11..01-20) of a backfill from 2025-01-01."""

days = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-12-31")
multi_run = dg.BackfillPolicy.multi_run(max_partitions_per_run=RUN_DAYS)


@ray_asset(
    partitions_def=days,
    partition_column="order_date",
    backfill_policy=multi_run,
    group_name="backfill",
)
def backfill_orders(context: dg.AssetExecutionContext) -> ray.data.Dataset:
    run_days = list(context.partition_keys)
    return ray.data.range(len(run_days) * ROWS_PER_DAY).map_batches(
        make_orders,
        batch_format="numpy",
        fn_kwargs={"days": run_days, "rows_per_day": ROWS_PER_DAY, "customers": 10, "seed": 3},
    )


@ray_asset(
    partitions_def=days,
    partition_column="order_date",
    backfill_policy=multi_run,
    group_name="backfill",
)
def backfill_totals(
    context: dg.AssetExecutionContext, backfill_orders: ray.data.Dataset
) -> ray.data.Dataset:
    first_attempt = "dagster/parent_run_id" not in context.run.tags
    if first_attempt and KILLED_DAY in context.partition_keys:
        os.kill(os.getpid(), signal.SIGKILL)
    return backfill_orders.select_columns(["order_date", "order_id", "quantity"]).map_batches(
        _doubled_quantity, batch_format="pyarrow"
    )


def _doubled_quantity(table: pa.Table) -> pa.Table:
    return table.set_column(2, "quantity", pc.multiply(table["quantity"], 2))


defs = dg.Definitions(
    assets=[backfill_orders, backfill_totals],
    resources={
        "ray": RayResource(address=os.environ.get("RAY_ADDRESS")),
        "delta_io_manager": DeltaIOManager(
            root_uri=os.environ.get("RAY_ASSETS_TABLE_ROOT") or "data"
        ),
    },
    executor=dg.in_process_executor,
)
