"""The baseline of `bench/small_run.py`: one day of the reference pipeline in pandas, in one process.

What a user of dagster-deltalake-pandas would write for the same five assets, minus Dagster: the
same generator functions (so the data is identical, row for row), the same five transforms as
`definitions/assets.py` written with pandas, and each table written with
`deltalake.write_deltalake` (the daily ones partitioned by `order_date`, the day replaced with an
overwrite predicate, as dagster-deltalake does). DataFrames stay in memory between steps: no
table is read back, which favours this side (an IO manager would load each input again).

It is run as a fresh process and timed from start to exit by `bench/small_run.py`; it prints one
JSON line with the seconds of each of its steps, so the two sides can be compared step by step.

Run: `.venv/bin/python bench/small_run_pandas.py ROOT [--day D] [--rows-per-day N]
[--customers C] [--seed S]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
from deltalake import write_deltalake

REPO = Path(__file__).resolve().parent.parent
CUSTOMER_COLUMNS = ["customer_id", "region", "segment"]


def load_generator() -> ModuleType:
    """`definitions/generator.py` loaded as a file: `import definitions.generator` would first
    run `definitions/__init__.py`, which imports Dagster, Ray and the whole code location, a
    cost that a pandas script does not pay."""
    spec = importlib.util.spec_from_file_location(
        "reference_generator", REPO / "definitions/generator.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean(raw_orders: pd.DataFrame) -> pd.DataFrame:
    """`clean_orders`: valid orders (a price, a quantity, not cancelled) with a signed amount."""
    valid = (
        (raw_orders["quantity"] > 0)
        & (raw_orders["status"] != "cancelled")
        & raw_orders["unit_price"].notna()
    )
    orders = raw_orders[valid].reset_index(drop=True)
    gross = (orders["quantity"].astype("float64") * orders["unit_price"]).round(2)
    returned = orders["status"] == "returned"
    return orders.assign(amount=gross.where(~returned, -gross), is_return=returned)


def revenue_per_region(orders_enriched: pd.DataFrame) -> pd.DataFrame:
    """`daily_region_revenue`: revenue, order count and average order value per day and region."""
    revenue = orders_enriched.groupby(["order_date", "region"], as_index=False).agg(
        revenue=("amount", "sum"),
        orders=("amount", "size"),
        avg_order_value=("amount", "mean"),
    )
    return revenue.assign(
        revenue=revenue["revenue"].round(2),
        orders=revenue["orders"].astype("int64"),
        avg_order_value=revenue["avg_order_value"].round(2),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder the five tables are written under")
    parser.add_argument("--day", default="2024-01-01")
    parser.add_argument("--rows-per-day", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    day = dt.date.fromisoformat(args.day).isoformat()  # a date, so the predicate is safe
    steps: dict[str, float] = {}
    last = time.perf_counter()

    def step(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        steps[name] = round(now - last, 3)
        last = now

    def write_day(table: pd.DataFrame, name: str) -> None:
        write_deltalake(
            str(args.root / name),
            table,
            mode="overwrite",
            partition_by=["order_date"],
            predicate=f"order_date = '{day}'",
        )

    generator = load_generator()
    customer_ids = {"id": np.arange(args.customers, dtype=np.int64)}
    customers = generator.make_customers(customer_ids, seed=args.seed).to_pandas()
    write_deltalake(str(args.root / "customers"), customers, mode="overwrite")
    step("customers")

    raw_orders = generator.make_orders(
        {"id": np.arange(args.rows_per_day, dtype=np.int64)},
        days=[day],
        rows_per_day=args.rows_per_day,
        customers=args.customers,
        seed=args.seed,
    ).to_pandas()
    write_day(raw_orders, "raw_orders")
    step("raw_orders")

    clean_orders = clean(raw_orders)
    write_day(clean_orders, "clean_orders")
    step("clean_orders")

    orders_enriched = clean_orders.merge(customers[CUSTOMER_COLUMNS], on="customer_id", how="inner")
    write_day(orders_enriched, "orders_enriched")
    step("orders_enriched")

    write_day(revenue_per_region(orders_enriched), "daily_region_revenue")
    step("daily_region_revenue")
    print(json.dumps({"step_s": steps}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
