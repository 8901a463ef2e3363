"""Overhead benchmark: the reference pipeline through Dagster + ray_assets vs a plain Ray script.

  D  `dagster.materialize` of the reference code location's assets (customers, then the daily
     assets for a range of days in one run) with `resources/local.py`'s resources: Dagster's run
     machinery, `ray_asset`, `DeltaIOManager`, partition-exact commits, metadata.
  P  The same pipeline as a plain Ray Data script, as one would write it without ray_assets:
     the same generator and transform functions, every stage written with Ray's fastest sink,
     `Dataset.write_parquet(partition_cols=[...])`, and read back with `ray.data.read_parquet`
     (no table format, no commit, no checks, no metadata). This is the baseline of the result.
  W  The same script with Ray's own Delta sink and source (`write_delta` / `read_delta`),
     reported in the details: the like-for-like comparison for a user who wants Delta tables.

Both run in one process against one Ray (started once, untimed: a cost of Ray, not of
ray_assets), alternating D, P, D, P, ... into fresh folders, after one untimed warm-up each;
medians are compared (`overhead_vs_plain_ray` = D / P, goal <= 1.10). Each run is checked
from metadata only (Delta logs, Parquet footers): raw order rows per day, and the same number
of revenue rows for every method; the data is never scanned by deltalake, which can abort the
process at exit.

Run: `.venv/bin/python bench/overhead.py [--days D] [--rows-per-day N] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script, not a package

import pyarrow as pa  # noqa: E402
from _results import (  # noqa: E402
    VerificationError,
    exit_code_of,
    exit_now,
    median,
    reproduce_command,
    timed,
    write_result,
)

START = "2024-01-01"


def day_keys(days: int) -> list[str]:
    from definitions.assets import daily

    return daily.get_partition_keys()[:days]


def run_dagster(root: Path, days: list[str], rows_per_day: int, customers: int) -> None:
    from definitions.runs import materialize_days
    from definitions.sources import OrderSource
    from resources.local import local_resources

    resources = {
        **local_resources(table_root=str(root)),
        "order_source": OrderSource(rows_per_day=rows_per_day, customers=customers),
    }
    if not all(result.success for result in materialize_days(resources, days, with_models=False)):
        raise VerificationError("a Dagster run failed")


def run_plain_ray(
    root: Path, days: list[str], rows_per_day: int, customers: int, storage: str = "parquet"
) -> None:
    """The pipeline as a plain Ray Data script (the baselines), storing stages as `storage`."""
    import math

    import ray.data
    from ray.data.aggregate import Count, Mean, Sum
    from ray.data.expressions import col

    from definitions.assets import CUSTOMER_COLUMNS
    from definitions.generator import make_customers, make_orders
    from definitions.sources import OrderSource
    from definitions.transforms import price_orders, round_money
    from ray_assets import shuffle_partitions

    def write(dataset: ray.data.Dataset, name: str, by_day: bool = True) -> None:
        if storage == "delta":
            dataset.write_delta(str(root / name), partition_by=["order_date"] if by_day else None)
        else:
            dataset.write_parquet(
                str(root / name), partition_cols=["order_date"] if by_day else None
            )

    def read(name: str) -> ray.data.Dataset:
        if storage == "delta":
            return ray.data.read_delta(str(root / name))
        return ray.data.read_parquet(str(root / name))

    source = OrderSource(rows_per_day=rows_per_day, customers=customers)
    write(
        ray.data.range(
            customers, override_num_blocks=max(1, math.ceil(customers / source.rows_per_block))
        ).map_batches(make_customers, batch_format="numpy", fn_kwargs={"seed": source.seed}),
        "customers",
        by_day=False,
    )
    rows = len(days) * rows_per_day
    write(
        ray.data.range(
            rows, override_num_blocks=max(len(days), math.ceil(rows / source.rows_per_block))
        ).map_batches(
            make_orders,
            batch_format="numpy",
            fn_kwargs={
                "days": days,
                "rows_per_day": rows_per_day,
                "customers": customers,
                "seed": source.seed,
            },
        ),
        "raw_orders",
    )
    valid = (col("quantity") > 0) & (col("status") != "cancelled") & col("unit_price").is_not_null()
    write(
        read("raw_orders").filter(expr=valid).map_batches(price_orders, batch_format="pyarrow"),
        "clean_orders",
    )
    write(
        read("clean_orders").join(
            read("customers").select_columns(CUSTOMER_COLUMNS),
            join_type="inner",
            num_partitions=shuffle_partitions(),
            on=("customer_id",),
        ),
        "orders_enriched",
    )
    write(
        read("orders_enriched")
        .select_columns(["order_date", "region", "amount"])
        .groupby(["order_date", "region"], num_partitions=shuffle_partitions())
        .aggregate(
            Sum("amount", alias_name="revenue"),
            Count(alias_name="orders"),
            Mean("amount", alias_name="avg_order_value"),
        )
        .map_batches(round_money, batch_format="pyarrow"),
        "daily_region_revenue",
    )


def run_plain_ray_delta(root: Path, days: list[str], rows_per_day: int, customers: int) -> None:
    run_plain_ray(root, days, rows_per_day, customers, storage="delta")


def log_rows(path: Path) -> dict[str, int]:
    """Rows per `order_date` from the Delta log's add actions or the Parquet footers, no scan."""
    from deltalake import DeltaTable

    if not (path / "_delta_log").exists():
        import pyarrow.parquet as pq

        counts: dict[str, int] = {}
        for file in path.rglob("*.parquet"):
            day = file.parent.name.partition("order_date=")[2]
            counts[day] = counts.get(day, 0) + pq.read_metadata(file).num_rows
        return counts

    actions = pa.table(DeltaTable(str(path)).get_add_actions(flatten=True)).to_pylist()
    counts = {}
    for action in actions:
        key = str(action.get("partition.order_date", ""))
        counts[key] = counts.get(key, 0) + action["num_records"]
    return counts


def verify(root: Path, days: list[str], rows_per_day: int) -> int:
    raw = log_rows(root / "raw_orders")
    if raw != dict.fromkeys(days, rows_per_day):
        raise VerificationError(f"{root}: raw_orders holds {raw}")
    revenue = log_rows(root / "daily_region_revenue")
    if set(revenue) != set(days):
        raise VerificationError(f"{root}: daily_region_revenue has days {sorted(revenue)}")
    return sum(revenue.values())


RUNNERS = {"D": run_dagster, "P": run_plain_ray, "W": run_plain_ray_delta}
NAMES = {
    "D": "Dagster + ray_assets",
    "P": "plain Ray, Parquet",
    "W": "plain Ray, write_delta",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--rows-per-day", type=int, default=250_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    try:
        return exit_code_of(lambda: run(args, parser, out))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: Path) -> None:
    import ray
    from ray.data import DataContext

    from ray_assets import RayResource

    RayResource().ensure_started()
    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("dagster").setLevel(logging.WARNING)
    days = day_keys(args.days)
    sizes = (args.rows_per_day, args.customers)

    def one_run(method: str, label: str, rows_per_day: int, customers: int) -> tuple[float, int]:
        root = out / f"{label}-{method}"
        seconds, _ = timed(lambda: RUNNERS[method](root, days, rows_per_day, customers))
        revenue_rows = verify(root, days, rows_per_day)
        shutil.rmtree(root, ignore_errors=True)
        return seconds, revenue_rows

    warmup = {m: one_run(m, "warmup", 2_000, 200)[0] for m in RUNNERS}
    print("warm-up (untimed): " + ", ".join(f"{m} {s:.1f}s" for m, s in warmup.items()))
    seconds: dict[str, list[float]] = {m: [] for m in RUNNERS}
    revenue_rows: dict[str, int] = {}
    for repeat in range(args.repeats):
        for method in RUNNERS:
            took, revenue_rows[method] = one_run(method, f"run{repeat}", *sizes)
            seconds[method].append(took)
            print(
                f"[{repeat + 1}/{args.repeats}] {method} {NAMES[method]:<24} {took:7.1f} s",
                flush=True,
            )
    if len(set(revenue_rows.values())) != 1:
        raise VerificationError(f"the two pipelines disagree on revenue rows: {revenue_rows}")
    medians = {m: median(s) for m, s in seconds.items()}
    command = reproduce_command("bench/overhead.py", args, parser)
    write_result(
        "overhead_vs_plain_ray",
        medians["D"] / medians["P"],
        unit="x",
        better="lower",
        goal="<= 1.10",
        baseline="the same pipeline (same generator and transforms) as a plain Ray Data script "
        "writing each stage with Dataset.write_parquet(partition_cols=['order_date']) and reading "
        "it with ray.data.read_parquet; value = median(Dagster + ray_assets seconds) / "
        "median(plain script seconds). details.vs_plain_ray_write_delta compares with the same "
        "script on Ray's write_delta/read_delta",
        command=command,
        details={
            "days": days,
            "rows_per_day": args.rows_per_day,
            "raw_rows": args.rows_per_day * len(days),
            "customers": args.customers,
            "repeats": args.repeats,
            "seconds": seconds,
            "median_seconds": medians,
            "methods": NAMES,
            "vs_plain_ray_write_delta": round(medians["D"] / medians["W"], 3),
            "warmup_seconds": warmup,
            "ray_cluster_cpus": ray.cluster_resources().get("CPU"),
        },
    )


if __name__ == "__main__":
    exit_now(main())
