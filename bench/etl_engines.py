"""One engine's run of the ETL benchmark's job, in a process of its own.

`bench/etl.py` starts this script once per engine and round, so that no engine inherits
another's warm state (a started Ray, imported modules, caches) and each pays its own start-up,
as a scheduled job does. The job, the same for every engine:

    read the Parquet files -> keep the rows where `valid` -> amount_usd = amount * rate[currency]
    -> per day: sum(amount_usd), count -> a Delta table partitioned by day

Imports, and for the Ray engines starting Ray, happen before the clock starts: `job_s` is the
job alone (the figure the results compare), `setup_s` is Ray's start-up (0 for the others), and
the parent measures the process's wall time from the outside. The report is a JSON file (with
the process id: a Ray engine's Ray Data log, which says where its seconds went operator by
operator, is under `/tmp/ray/session_*_<pid>/logs/ray-data/`).

Run: `.venv/bin/python bench/etl_engines.py ENGINE --data DIR --out DIR --report FILE`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script, not a package

import pyarrow as pa  # noqa: E402
from _results import exit_code_of, exit_now  # noqa: E402
from etl_data import JOB_COLUMNS, RATES, TABLE_NAME, input_files  # noqa: E402

Job = Callable[[Path, Path], None]
"""An engine's job: the input folder, and the folder its `daily_usd` table goes into."""


# ---------------------------------------------------------------------------- single-process
def run_duckdb(data: Path, out: Path) -> None:
    """DuckDB's SQL over the files (the reference: the result every other engine must match)."""
    import duckdb
    from deltalake import write_deltalake

    con = duckdb.connect()
    con.register("rates", pa.table({"currency": list(RATES), "rate": list(RATES.values())}))
    result = con.sql(
        """
        SELECT o.day, sum(o.amount * r.rate) AS amount_usd, count(*) AS orders
        FROM read_parquet($files) AS o JOIN rates AS r ON o.currency = r.currency
        WHERE o.valid
        GROUP BY o.day
        """,
        params={"files": [str(file) for file in input_files(data)]},
    ).to_arrow_table()
    write_deltalake(str(out / TABLE_NAME), result, partition_by=["day"])


def run_polars(data: Path, out: Path) -> None:
    """Polars' lazy query on its streaming engine (batches, all cores, bounded memory)."""
    import polars as pl
    from deltalake import write_deltalake

    result = (
        pl.scan_parquet(input_files(data))
        .filter(pl.col("valid"))
        .with_columns(
            amount_usd=pl.col("amount")
            * pl.col("currency").replace_strict(RATES, return_dtype=pl.Float64)
        )
        .group_by("day")
        .agg(pl.col("amount_usd").sum(), pl.len().cast(pl.Int64).alias("orders"))
        .collect(engine="streaming")
    )
    write_deltalake(str(out / TABLE_NAME), result.to_arrow(), partition_by=["day"])


def run_pandas(data: Path, out: Path) -> None:
    """pandas as one writes it for data larger than memory: file by file, each file's per-day
    sums and counts kept, and added up at the end. One core: pandas does not parallelise, which
    is what the comparison is about."""
    import pandas as pd
    from deltalake import write_deltalake

    partials = []
    for file in input_files(data):
        frame = pd.read_parquet(file, columns=JOB_COLUMNS)
        frame = frame[frame["valid"]]
        amount_usd = frame["amount"] * frame["currency"].map(RATES)
        partials.append(amount_usd.groupby(frame["day"]).agg(["sum", "size"]))
    result = pd.concat(partials).groupby(level=0).sum()
    table = pa.table(
        {
            "day": pa.array(result.index.astype(str), pa.string()),
            "amount_usd": pa.array(result["sum"], pa.float64()),
            "orders": pa.array(result["size"], pa.int64()),
        }
    )
    write_deltalake(str(out / TABLE_NAME), table, partition_by=["day"])


# ---------------------------------------------------------------------------- Ray
def start_plain_ray() -> None:
    """Ray with its defaults, as a plain Ray Data script gets it. `address="local"` starts this
    process's own Ray: a bare `ray.init()` would join any cluster already up on the machine."""
    import ray

    ray.init(address="local")
    _quiet_ray_data()


def run_ray_naive(data: Path, out: Path) -> None:
    """Plain Ray Data as its tutorials write it: every column read, a row filter, a pandas batch
    function with `Series.map`, the hash-shuffle groupby, Ray's own `write_delta`."""
    import ray.data
    from ray.data.aggregate import Count, Sum

    def to_usd(batch: Any) -> Any:
        batch["amount_usd"] = batch["amount"] * batch["currency"].map(RATES)
        return batch

    (
        ray.data.read_parquet(str(data))
        .filter(lambda row: row["valid"])
        .map_batches(to_usd, batch_format="pandas")
        .groupby("day")
        .aggregate(Sum("amount_usd"), Count())
        .rename_columns({"sum(amount_usd)": "amount_usd", "count()": "orders"})
        .write_delta(str(out / TABLE_NAME), partition_by=["day"])
    )


def start_ray_assets() -> None:
    import etl_ray_assets

    etl_ray_assets.start()
    _quiet_ray_data()


def run_ray_assets(data: Path, out: Path) -> None:
    """A Dagster run of a daily `ray_asset` over the 30 days (see `bench/etl_ray_assets.py`)."""
    import etl_ray_assets

    etl_ray_assets.run(data, out)


def _quiet_ray_data() -> None:
    """No progress bars and no per-execution INFO lines in the engine's log."""
    import logging

    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------- the process
@dataclass(frozen=True)
class Engine:
    """How one engine runs the job in its process."""

    imports: tuple[str, ...]
    """Imported before the clock starts: import time is the process's, not the job's."""
    job: Job
    start: Callable[[], None] | None = None
    """Started before the clock starts (Ray), timed as `setup_s`."""


ENGINES: dict[str, Engine] = {
    "duckdb": Engine(("duckdb", "deltalake"), run_duckdb),
    "polars": Engine(("polars", "deltalake"), run_polars),
    "pandas": Engine(("pandas", "deltalake"), run_pandas),
    "ray_naive": Engine(("ray.data", "pandas", "deltalake"), run_ray_naive, start_plain_ray),
    "ray_assets": Engine(("etl_ray_assets", "deltalake"), run_ray_assets, start_ray_assets),
}


def run_engine(engine: str, data: Path, out: Path, report: Path) -> None:
    """Import and start (untimed), run the job (timed), and write the report."""
    spec = ENGINES[engine]
    for module in spec.imports:
        importlib.import_module(module)
    began = time.perf_counter()
    if spec.start is not None:
        spec.start()
    setup_s = time.perf_counter() - began
    began = time.perf_counter()
    spec.job(data, out)
    job_s = time.perf_counter() - began
    measured = {
        "engine": engine,
        "job_s": job_s,
        "setup_s": setup_s,
        "pid": os.getpid(),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
    }
    report.write_text(json.dumps(measured) + "\n")
    print(f"{engine}: job {job_s:.2f} s (setup {setup_s:.2f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("engine", choices=list(ENGINES))
    parser.add_argument("--data", type=Path, required=True, help="folder of the input files")
    parser.add_argument("--out", type=Path, required=True, help="folder of the output table")
    parser.add_argument("--report", type=Path, required=True, help="where the JSON report goes")
    args = parser.parse_args(argv)
    return exit_code_of(lambda: run_engine(args.engine, args.data, args.out, args.report))


if __name__ == "__main__":
    exit_now(main())
