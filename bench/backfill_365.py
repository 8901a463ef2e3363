"""Backfill benchmark: a year of small daily partitions as ONE ray_assets run vs one run per day
through dagster-deltalake-pandas, the IO manager a Dagster user would otherwise pick.

  ours      The reference `raw_orders` asset (`definitions/assets.py`: a daily `ray_asset`,
            `definitions/generator.py`'s orders, `--rows-per-day` a day) materialized for
            `--days` days from 2024-01-01 in one run (`materialize_partition_range`, what a
            single-run backfill does), in this process, on the Ray embedded in it
            (`RayResource()`, started once, untimed), into a fresh table through
            `DeltaIOManager`: one Delta commit for the whole range.
  baseline  The same days as one `dg.materialize` run per day of a pandas asset producing the
            same rows (the same `make_orders`, with `order_date` as a `date`, the only partition
            column type for which dagster-deltalake can overwrite one partition), stored through
            `dagster_deltalake_pandas.DeltaLakePandasIOManager` into a fresh table partitioned by
            the day: one Delta commit per day. It runs in its own virtual environment,
            `bench/.venv-dagster-deltalake/` (created once by `bench/_baseline_venv.py`, shared
            with `bench/small_run.py`'s baseline, and reused; git-ignored), because
            dagster-deltalake-pandas 0.29.27 pins dagster 1.13.27 and pandas 2.3.3, which the
            project's environment cannot hold; `bench/backfill_365_baseline.py` times the runs
            inside that process, after an untimed warm-up run, so its interpreter start and
            imports do not count. The runs are in-process and back to back, without the process
            start Dagster's run launcher pays for each run of a real multi-run backfill: the
            baseline's best case.

Repeats alternate ours, baseline, ours, baseline, ... each into a fresh table, after one
untimed warm-up of ours (two days). Both tables are checked after every repeat, untimed and
without a deltalake scan (which can abort the process at exit): the partitions in each Delta log
must be exactly the days, each holding `--rows-per-day` rows, and every day's rows, read from
its data files with pyarrow and sorted by `order_id`, must equal the generator's rows for that
day, column by column; otherwise `VerificationError`.

`backfill_365_vs_dagster_deltalake` = median(baseline s) / median(ours s), goal >= 20. Its
spread is the widest the repeats allow, min(baseline) / max(ours) .. max(baseline) / min(ours),
so it is defined for any `--repeats` and `--baseline-repeats`; the ratios of the repeats that
ran side by side are in `details.per_repeat_ratio`.

Run: `.venv/bin/python bench/backfill_365.py [--days D] [--rows-per-day N] [--repeats R]
[--baseline-repeats B]` (a quick check: `--days 10 --repeats 1 --baseline-repeats 1`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script, not a package

import pyarrow as pa  # noqa: E402
from _baseline_venv import ensure_baseline_venv  # noqa: E402
from _results import (  # noqa: E402
    VerificationError,
    exit_code_of,
    exit_now,
    median,
    reproduce_command,
    spread,
    timed,
    write_result,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
START = "2024-01-01"
BASELINE_SCRIPT = BENCH / "backfill_365_baseline.py"
BASELINE_RESULT_PREFIX = "BASELINE_RESULT "
SIDES = {
    "ours": "ray_assets, one run (ray_asset + DeltaIOManager)",
    "baseline": "dagster-deltalake-pandas, one run per day (DeltaLakePandasIOManager)",
}


def day_keys(days: int) -> list[str]:
    """The first `days` keys of the reference daily partitions (from 2024-01-01)."""
    from definitions.assets import daily

    keys = daily.get_partition_keys()[:days]
    if len(keys) != days:
        raise ValueError(f"only {len(keys)} days from {START} are in the past")
    return keys


def run_ours(root: Path, days: list[str], rows_per_day: int) -> float:
    """Seconds of one single-run backfill of `raw_orders` for `days` into `<root>/raw_orders`."""
    import dagster as dg

    from definitions.assets import raw_orders
    from definitions.sources import OrderSource
    from ray_assets import DeltaIOManager, RayResource, materialize_partition_range

    resources = {
        "ray": RayResource(),
        "delta_io_manager": DeltaIOManager(root_uri=str(root)),
        "order_source": OrderSource(rows_per_day=rows_per_day),
    }
    with dg.DagsterInstance.ephemeral() as instance:  # disposed here, not by a later GC
        seconds, result = timed(
            lambda: materialize_partition_range(
                [raw_orders], days[0], days[-1], resources=resources, instance=instance
            )
        )
    if not result.success:
        raise VerificationError("the ray_assets run failed")
    return seconds


def run_baseline(python: Path, root: Path, days: list[str], rows_per_day: int) -> dict[str, Any]:
    """The baseline subprocess's report: seconds of its runs, the table, package versions."""
    from definitions.sources import OrderSource

    source = OrderSource(rows_per_day=rows_per_day)
    command = [str(python), str(BASELINE_SCRIPT), "--root", str(root), "--start", days[0]]
    command += ["--days", str(len(days)), "--rows-per-day", str(rows_per_day)]
    command += ["--customers", str(source.customers), "--seed", str(source.seed)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3 * 3600)
    reports = [
        line[len(BASELINE_RESULT_PREFIX) :]
        for line in done.stdout.splitlines()
        if line.startswith(BASELINE_RESULT_PREFIX)
    ]
    if done.returncode != 0 or len(reports) != 1:
        raise RuntimeError(
            f"the baseline exited {done.returncode} without a result:\n{done.stderr[-3000:]}"
        )
    return json.loads(reports[0])


def expected_day(day: str, rows_per_day: int) -> pa.Table:
    """The generator's rows of `day`, sorted by `order_id`, without the partition column."""
    import numpy as np

    from definitions.generator import make_orders
    from definitions.sources import OrderSource

    source = OrderSource(rows_per_day=rows_per_day)
    orders = make_orders(
        {"id": np.arange(rows_per_day, dtype=np.int64)},
        days=[day],
        rows_per_day=rows_per_day,
        customers=source.customers,
        seed=source.seed,
    )
    return orders.drop_columns(["order_date"]).sort_by("order_id")


def files_by_day(table: Path) -> dict[str, list[Path]]:
    """The live data files of each `order_date` partition, from the Delta log (no scan).

    `order_date` may be stored as text (ray_assets) or as a date (dagster-deltalake); both are
    keyed by the ISO day here.
    """
    from deltalake import DeltaTable

    actions = pa.table(DeltaTable(str(table)).get_add_actions(flatten=True)).to_pylist()
    days: dict[str, list[Path]] = {}
    for action in actions:
        value = action.get("partition.order_date")
        day = value.isoformat() if hasattr(value, "isoformat") else str(value)
        days.setdefault(day, []).append(table / unquote(action["path"]))
    return days


def verify(table: Path, days: list[str], rows_per_day: int) -> int:
    """Check that `table` holds exactly the generator's rows, once, per day; return its files."""
    import pyarrow.parquet as pq

    files = files_by_day(table)
    if sorted(files) != sorted(days):
        missing, extra = sorted(set(days) - set(files)), sorted(set(files) - set(days))
        raise VerificationError(f"{table}: days missing {missing[:5]}, unexpected {extra[:5]}")
    for day in days:
        expected = expected_day(day, rows_per_day)
        stored = pa.concat_tables(
            pq.read_table(path, columns=expected.schema.names) for path in files[day]
        )
        if stored.num_rows != rows_per_day:
            raise VerificationError(f"{table}: {day} holds {stored.num_rows} rows")
        stored = stored.cast(expected.schema).sort_by("order_id")
        if not stored.equals(expected):
            differing = [
                name for name in expected.schema.names if not stored[name].equals(expected[name])
            ]
            raise VerificationError(f"{table}: {day} differs from the generator in {differing}")
    return sum(len(paths) for paths in files.values())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365, help="daily partitions from 2024-01-01")
    parser.add_argument("--rows-per-day", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours")
    parser.add_argument(
        "--baseline-repeats", type=int, default=5, help="timed backfills of the baseline"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.days, args.rows_per_day, args.repeats, args.baseline_repeats) < 1:
        parser.error("--days, --rows-per-day, --repeats and --baseline-repeats must be >= 1")
    scratch = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    try:
        return exit_code_of(lambda: run(args, parser, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, scratch: Path) -> None:
    import ray
    from ray.data import DataContext

    from ray_assets import RayResource

    python = ensure_baseline_venv()
    RayResource().ensure_started()
    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("dagster").setLevel(logging.WARNING)
    days = day_keys(args.days)
    warmup_s = run_ours(scratch / "warmup", days[:2], args.rows_per_day)
    shutil.rmtree(scratch / "warmup", ignore_errors=True)
    print(f"warm-up (untimed): ours {warmup_s:.1f} s", flush=True)

    seconds: dict[str, list[float]] = {"ours": [], "baseline": []}
    files: dict[str, int] = {}
    report: dict[str, Any] = {}
    for repeat in range(max(args.repeats, args.baseline_repeats)):
        for side, repeats in (("ours", args.repeats), ("baseline", args.baseline_repeats)):
            if repeat >= repeats:
                continue
            root = scratch / f"{side}-{repeat}"
            if side == "ours":
                took, table = run_ours(root, days, args.rows_per_day), root / "raw_orders"
            else:
                report = run_baseline(python, root, days, args.rows_per_day)
                took, table = report["seconds"], Path(report["table"])
            files[side] = verify(table, days, args.rows_per_day)
            shutil.rmtree(root, ignore_errors=True)
            seconds[side].append(took)
            print(f"[{repeat + 1}] {side:8s} {took:8.2f} s ({files[side]} files)", flush=True)

    paired = min(args.repeats, args.baseline_repeats)
    per_repeat = [
        b / o for b, o in zip(seconds["baseline"][:paired], seconds["ours"][:paired], strict=True)
    ]
    value = median(seconds["baseline"]) / median(seconds["ours"])
    bounds = (
        min(seconds["baseline"]) / max(seconds["ours"]),
        max(seconds["baseline"]) / min(seconds["ours"]),
    )
    rows = len(days) * args.rows_per_day
    write_result(
        "backfill_365_vs_dagster_deltalake",
        value,
        unit="x",
        better="higher",
        goal=">= 20",
        baseline=(
            f"the same {len(days)} days ({args.rows_per_day:,} rows each, the same generator) as "
            f"{len(days)} in-process dg.materialize runs, one per day, of a pandas asset stored "
            "by dagster-deltalake-pandas's DeltaLakePandasIOManager (one Delta commit per day), "
            "in its own venv; value = median(baseline s) / median(ray_assets single-run s); "
            "spread = min(baseline)/max(ours) .. max(baseline)/min(ours)"
        ),
        command=reproduce_command("bench/backfill_365.py", args, parser),
        details={
            "sides": SIDES,
            "repeats": args.repeats,
            "baseline_repeats": args.baseline_repeats,
            "seconds": seconds,
            "median_s": {side: round(median(s), 3) for side, s in seconds.items()},
            "spread_s": {side: spread(s) for side, s in seconds.items()},
            "per_repeat_ratio": [round(r, 3) for r in per_repeat],
            "baseline_s_per_run": round(median(seconds["baseline"]) / len(days), 4),
            "rows": rows,
            "rows_per_day": args.rows_per_day,
            "partitions": {"count": len(days), "first": days[0], "last": days[-1]},
            "files": files,
            "warmup_s": {"ours": round(warmup_s, 3), "baseline": round(report["warmup_s"], 3)},
            "baseline_versions": report.get("versions"),
            "ray_cluster_cpus": ray.cluster_resources().get("CPU"),
            "verification": (
                f"after every repeat, both tables: the Delta log's partitions are exactly the "
                f"{len(days)} days, each holding {args.rows_per_day:,} rows, and every day's "
                "rows read from its data files (sorted by order_id) equal the generator's, "
                "column by column: passed"
            ),
        },
        spread=bounds,
    )


if __name__ == "__main__":
    exit_now(main())
