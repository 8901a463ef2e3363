"""The baseline code location of `bench/small_run.py`: the reference pipeline as a
dagster-deltalake-pandas user writes it.

The same five assets as `definitions/assets.py` (customers, raw_orders, clean_orders,
orders_enriched, daily_region_revenue), as plain pandas Dagster assets whose bodies are the
transforms of `bench/small_run_pandas.py` (imported from it, so the two pandas figures run the
very same code) on the same generator's rows. Every table is stored by
`dagster_deltalake_pandas.DeltaLakePandasIOManager` under `$SMALL_RUN_TABLE_ROOT/public/<asset>`
(the IO manager's default schema folder), and every input is loaded back through it, as a
user's run does. The daily assets share one `DailyPartitionsDefinition` from 2024-01-01 and carry
the `partition_expr` metadata that dagster-deltalake needs to partition the table by the day
and to replace only the run's day; `customers` is unpartitioned, as in the reference.

The day column `order_date` is a `date`, not the reference's ISO string: dagster-deltalake
builds its partition-overwrite predicate only for `date` and `timestamp` partition columns; with
a string column it cannot build one and silently overwrites the whole table on every run, which
no user could keep. `bench/small_run.py` compares the two sides' days as strings.

Steps run in the run's own process (`in_process_executor`), as ours do (`definitions/__init__.py`):
the same run machinery on both sides, and the baseline's best case, since Dagster's default
multiprocess executor would start a fresh interpreter (and import pandas and deltalake again)
for every step.

This file runs only in `bench/.venv-dagster-deltalake/` (made by `bench/_baseline_venv.py`),
because dagster-deltalake-pandas 0.29.27 pins dagster 1.13.27 and pandas 2.3.3. Sizes come from
the environment (a code location takes no arguments): `SMALL_RUN_TABLE_ROOT` (required),
`SMALL_RUN_ROWS_PER_DAY`, `SMALL_RUN_CUSTOMERS`, `SMALL_RUN_SEED`.

No `from __future__ import annotations` here: Dagster inspects the `context` annotation and
rejects it as a string.

Run (from `bench/small_run.py`): `SMALL_RUN_TABLE_ROOT=DIR bench/.venv-dagster-deltalake/bin/dagster
asset materialize -f bench/small_run_pandas_defs.py --select '*' --partition 2024-01-01`.
"""

import datetime as dt
import os
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from dagster_deltalake import LocalConfig
from dagster_deltalake_pandas import DeltaLakePandasIOManager

sys.path.insert(0, str(Path(__file__).resolve().parent))  # loaded by file, not as a package

from small_run_pandas import (  # noqa: E402
    CUSTOMER_COLUMNS,
    clean,
    load_generator,
    revenue_per_region,
)

ROWS_PER_DAY = int(os.environ.get("SMALL_RUN_ROWS_PER_DAY", "20000"))
CUSTOMERS = int(os.environ.get("SMALL_RUN_CUSTOMERS", "2000"))
SEED = int(os.environ.get("SMALL_RUN_SEED", "7"))
DAY_COLUMN = {"partition_expr": "order_date"}
"""What dagster-deltalake needs to know which column holds a daily asset's partition."""

daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")
generator = load_generator()


@dg.asset(group_name="sales")
def customers() -> pd.DataFrame:
    """Customer dimension: region and segment per customer (unpartitioned, rewritten each run)."""
    ids = {"id": np.arange(CUSTOMERS, dtype=np.int64)}
    return generator.make_customers(ids, seed=SEED).to_pandas()


@dg.asset(partitions_def=daily, metadata=DAY_COLUMN, group_name="sales")
def raw_orders(context: dg.AssetExecutionContext) -> pd.DataFrame:
    """The day's orders as the order system exports them, with the day as a `date`."""
    day = context.partition_key
    orders = generator.make_orders(
        {"id": np.arange(ROWS_PER_DAY, dtype=np.int64)},
        days=[day],
        rows_per_day=ROWS_PER_DAY,
        customers=CUSTOMERS,
        seed=SEED,
    ).to_pandas()
    orders["order_date"] = dt.date.fromisoformat(day)
    return orders


@dg.asset(partitions_def=daily, metadata=DAY_COLUMN, group_name="sales")
def clean_orders(raw_orders: pd.DataFrame) -> pd.DataFrame:
    """Valid orders only (a price, a quantity, not cancelled), with a signed amount."""
    return clean(raw_orders)


@dg.asset(partitions_def=daily, metadata=DAY_COLUMN, group_name="sales")
def orders_enriched(clean_orders: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """Clean orders with their customer's region and segment (inner join)."""
    return clean_orders.merge(customers[CUSTOMER_COLUMNS], on="customer_id", how="inner")


@dg.asset(partitions_def=daily, metadata=DAY_COLUMN, group_name="sales")
def daily_region_revenue(orders_enriched: pd.DataFrame) -> pd.DataFrame:
    """Revenue, order count and average order value per day and region."""
    return revenue_per_region(orders_enriched)


defs = dg.Definitions(
    assets=[customers, raw_orders, clean_orders, orders_enriched, daily_region_revenue],
    resources={
        "io_manager": DeltaLakePandasIOManager(
            root_uri=dg.EnvVar("SMALL_RUN_TABLE_ROOT"), storage_options=LocalConfig()
        )
    },
    executor=dg.in_process_executor,
)
