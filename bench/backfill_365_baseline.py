"""The baseline of `bench/backfill_365.py`: a backfill of N daily partitions as N Dagster runs of
a pandas asset stored by dagster-deltalake-pandas's `DeltaLakePandasIOManager`.

This is what a Dagster user who wants Delta tables would otherwise pick. It runs in its own
virtual environment (`bench/.venv-dagster-deltalake/`, made by `backfill_365.py`) because
dagster-deltalake-pandas 0.29.27 pins dagster 1.13.27 and pandas 2.3.3, which the project's
environment cannot hold. It imports nothing of the project but the order generator, loaded
from its file (the `definitions` package would import Ray and ray_assets).

The asset produces exactly the rows of the reference `raw_orders` asset for its day (the same
`make_orders` function, as a pandas DataFrame), except that `order_date` is a `date`:
dagster-deltalake builds its partition-overwrite predicate only for `date` and `timestamp`
partition columns. With a string column it cannot build one and falls back to overwriting the
whole table on every run, so each run would erase the days before it.

The runs are `dg.materialize` calls in this one process, one partition each, on one ephemeral
instance: a multi-run backfill without the process start that Dagster's run launcher pays for
each run, so the baseline's best case. After an untimed warm-up run into a throwaway table
(imports, first-write paths), the N runs are timed together; the result is one line on stdout,
`BASELINE_RESULT {json}`, for the parent to parse. The interpreter's start is not timed.

Run (from `backfill_365.py`): `bench/.venv-dagster-deltalake/bin/python
bench/backfill_365_baseline.py --root DIR --start 2024-01-01 --days 365 --rows-per-day 10000`.
"""

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import dagster as dg
import numpy as np
import pandas as pd
from dagster_deltalake import LocalConfig
from dagster_deltalake_pandas import DeltaLakePandasIOManager

GENERATOR = Path(__file__).resolve().parent.parent / "definitions" / "generator.py"
RESULT_PREFIX = "BASELINE_RESULT "
PACKAGES = ("dagster", "dagster-deltalake", "dagster-deltalake-pandas", "deltalake", "pandas")


def load_generator() -> ModuleType:
    """`definitions/generator.py` as a module of its own: the same rows as the reference asset,
    without importing the `definitions` package (Ray, ray_assets) into this environment."""
    spec = importlib.util.spec_from_file_location("bench_order_generator", GENERATOR)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the order generator from {GENERATOR}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def orders_asset(start: str, rows_per_day: int, customers: int, seed: int) -> dg.AssetsDefinition:
    """A daily pandas asset `raw_orders`: one day of the reference orders per run."""
    generator = load_generator()

    @dg.asset(
        partitions_def=dg.DailyPartitionsDefinition(start_date=start),
        metadata={"partition_expr": "order_date"},
    )
    def raw_orders(context: dg.AssetExecutionContext) -> pd.DataFrame:
        day = context.partition_key
        orders = generator.make_orders(
            {"id": np.arange(rows_per_day, dtype=np.int64)},
            days=[day],
            rows_per_day=rows_per_day,
            customers=customers,
            seed=seed,
        ).to_pandas()
        orders["order_date"] = dt.date.fromisoformat(day)
        return orders

    return raw_orders


def backfill(asset: dg.AssetsDefinition, root: Path, days: list[str]) -> float:
    """Seconds of one run per day, in order, on one instance (as one backfill's runs share one)."""
    resources = {
        "io_manager": DeltaLakePandasIOManager(root_uri=str(root), storage_options=LocalConfig())
    }
    with dg.DagsterInstance.ephemeral() as instance:  # disposed here, not by a later GC
        started = time.perf_counter()
        for day in days:
            result = dg.materialize(
                [asset], partition_key=day, resources=resources, instance=instance
            )
            if not result.success:
                raise RuntimeError(f"the run for {day} failed")
        return time.perf_counter() - started


def table_path(root: Path) -> Path:
    """Where DeltaLakeIOManager put `raw_orders`: `<root>/<schema>/raw_orders`, the schema
    defaulting to `public`."""
    tables = sorted(p.parent for p in root.glob("*/raw_orders/_delta_log"))
    if len(tables) != 1:
        raise RuntimeError(f"expected one raw_orders table under {root}, found {tables}")
    return tables[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder of the fresh table")
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rows-per-day", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.getLogger("dagster").setLevel(logging.WARNING)
    asset = orders_asset(args.start, args.rows_per_day, args.customers, args.seed)
    days = asset.partitions_def.get_partition_keys()[: args.days]
    if len(days) != args.days:
        raise ValueError(f"only {len(days)} days from {args.start} are in the past")
    with tempfile.TemporaryDirectory(prefix="bench-backfill-warmup-") as warmup_root:
        warmup_s = backfill(asset, Path(warmup_root), days[:1])
    seconds = backfill(asset, args.root, days)
    result = {
        "seconds": seconds,
        "runs": len(days),
        "warmup_s": warmup_s,
        "table": str(table_path(args.root)),
        "versions": {name: importlib.metadata.version(name) for name in PACKAGES},
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: deltalake's runtime can abort the process at exit
