"""`python -m definitions.demo`: materialize the reference pipeline for a few days and show the tables.

Runs the customer dimension, then the daily assets for a range of days as **one** run (one Delta
commit per asset), on the machine's shared local Ray head (started if none is up), into `RAY_ASSETS_TABLE_ROOT` (default `data/`), and prints
each table's location, version and rows per partition, read from the Delta log. The runs are
recorded in the project's Dagster instance (`$DAGSTER_HOME`, default `.dagster_home/`), so
`dagster dev` shows them afterwards. Exits non-zero when a run fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import dagster as dg

DEFAULT_START = "2024-01-01"
DEFAULT_DAYS = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m definitions.demo", description=__doc__)
    parser.add_argument("--start", default=DEFAULT_START, help="first day (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="number of days")
    parser.add_argument("--root", help="table root (default: $RAY_ASSETS_TABLE_ROOT or data/)")
    parser.add_argument("--rows-per-day", type=int, help="orders per day (default 20,000)")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from definitions.assets import DAILY_ASSETS, DELTA_ASSETS, daily
    from definitions.instance import project_instance
    from definitions.runs import materialize_days
    from definitions.sources import OrderSource
    from resources.local import local_resources

    keys = daily.get_partition_keys()
    if args.start not in keys:
        parser.error(f"--start {args.start} is not a day of the daily partitions ({keys[0]}...)")
    first = keys.index(args.start)
    days = keys[first : first + args.days]
    if len(days) < args.days:
        parser.error(f"only {len(days)} day(s) from {args.start} are in the past")

    resources = local_resources(table_root=args.root)
    if args.rows_per_day:
        resources["order_source"] = OrderSource(rows_per_day=args.rows_per_day)
    _quiet_progress_bars()
    instance = project_instance()
    print(
        f"materializing customers, then {len(DAILY_ASSETS)} daily assets, the return-risk model "
        f"and the scored orders for {days[0]}...{days[-1]}"
    )
    results = materialize_days(resources, days, instance=instance, raise_on_error=False)
    if not all(result.success for result in results):
        for event in (e for result in results for e in result.all_events):
            if event.is_step_failure:
                print(event.step_failure_data.error.to_string(), file=sys.stderr)
        return 1
    io_manager = resources["delta_io_manager"]
    for asset in DELTA_ASSETS:
        print(describe_table(io_manager, asset.key))
    print(describe_table(io_manager, dg.AssetKey("orders_scored")))
    print(describe_export(resources["sql_io_manager"]))
    print(
        f"runs recorded in {os.environ['DAGSTER_HOME']}: see them with "
        f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev -w workspace.yaml"
    )
    return 0


def describe_export(sql_io_manager: object) -> str:
    """The revenue export's rows per day in the CRM database (its URL with the password hidden)."""
    database = sql_io_manager.database  # type: ignore[attr-defined]
    table = sql_io_manager.table_name(dg.AssetKey("daily_region_revenue_export"))  # type: ignore[attr-defined]
    counts = database.fetch(
        f"SELECT CAST(order_date AS VARCHAR(10)) AS day, COUNT(*) AS n FROM {table} "
        "GROUP BY 1 ORDER BY 1"
    ).to_pylist()
    lines = [f"daily_region_revenue_export: table {table} in {database.redacted_url}"]
    lines += [f"  {row['day']}: {row['n']} rows" for row in counts]
    return "\n".join(lines)


def describe_table(io_manager: object, asset_key: dg.AssetKey) -> str:
    """The table's location, version and rows per partition, from the Delta log (no data scan)."""
    from ray_assets import DeltaStore, PartitionSlice

    store: DeltaStore = io_manager.store_for(asset_key)  # type: ignore[attr-defined]
    name = asset_key.to_user_string()
    files = store.data_files(PartitionSlice.unpartitioned(name))
    rows: dict[str, int] = {}
    for file in files:
        key = "/".join(str(v) for v in file.partition_values.values()) or "(unpartitioned)"
        rows[key] = rows.get(key, 0) + (file.num_rows or 0)
    lines = [f"{name}: {store.table_uri} (Delta version {store.version()}, {len(files)} files)"]
    lines += [f"  {key}: {count:,} rows" for key, count in sorted(rows.items())]
    return "\n".join(lines)


def _quiet_progress_bars() -> None:
    """Ray Data's progress bars and per-dataset log lines would bury Dagster's in a terminal demo."""
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.exit(code)
