"""ETL benchmark: one read-filter-enrich-aggregate job on 60M rows, by five engines.

The job is the everyday shape of a daily batch step: read 64 Parquet files of orders (60M rows
by default: `bench/etl_data.py`), keep the valid rows, convert each amount to US dollars with a
fixed rate per currency, and write the per-day sum and count as a Delta table partitioned by day
(30 rows). Its cost is scanning and computing, not writing, so it measures how close ray_assets
comes to the single-machine engines a user would otherwise pick for such a step:

  duckdb      SQL over the files (the reference: every other output must equal its output).
  polars      a lazy query run by polars' streaming engine.
  pandas      file by file, partial sums added up: the baseline most Dagster users start from.
  ray_naive   plain Ray Data as its tutorials write it (every column, a row filter, a pandas
              batch function, the hash-shuffle groupby, `write_delta`), on Ray's defaults.
  ray_assets  one Dagster run of a daily-partitioned `ray_asset` over the 30 days, stored by
              `DeltaIOManager`: the job in Arrow-native Ray Data (projected read, expression
              filter, a pyarrow rate lookup, `aggregate_by`), on `RayResource()`'s embedded Ray.

Each engine runs in a fresh process of its own (`bench/etl_engines.py`), so none inherits
another's warm state, and is timed inside that process around the job only: imports and Ray's
start-up are outside the clock (reported as `setup_s`); the process's wall time, measured here,
is reported next to it. The non-Ray engines write with `deltalake.write_deltalake`.

An untimed warm-up round (verified like the others; `--no-warmup` skips it) brings the input into
the page cache; then `--rounds` rounds run every engine once each, in an order rotated each
round, so drift of the machine and position in the round hit every engine alike. After each
round every engine's table is checked against DuckDB's, DuckDB's against the generator's own
totals (`bench/etl_check.py`); a difference raises `VerificationError` and no result is written.

Results (`bench/results/<name>.json`), each the ratio of medians of the job seconds, with the
min-max of the same ratio taken round by round; lower is better:
  etl_vs_duckdb   ray_assets / duckdb, goal <= 3
  etl_vs_polars   ray_assets / polars, goal <= 3
  etl_vs_pandas   ray_assets / pandas, goal <= 0.2 (five times faster than pandas)
`details` holds every engine's per-round seconds (job, setup, process wall), medians, spreads,
and the `ray_naive` figures. A result whose engines were not run (`--engines`) is not written.

Run: `.venv/bin/python bench/etl.py [--rows N] [--rounds R] [--engines duckdb,ray_assets,...]`
(the first run of a size generates its input into `bench/.data/etl-<rows>/`, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script, not a package

from _results import (  # noqa: E402
    exit_code_of,
    exit_now,
    finite_or_none,
    median,
    reproduce_command,
    shown,
    spread,
    write_result,
)
from etl_check import check_round  # noqa: E402
from etl_data import FILES, InputData, ensure_input  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ENGINES = ("duckdb", "polars", "pandas", "ray_naive", "ray_assets")
REFERENCE = "duckdb"
SUBJECT = "ray_assets"
RESULTS = {
    "etl_vs_duckdb": ("duckdb", "<= 3"),
    "etl_vs_polars": ("polars", "<= 3"),
    "etl_vs_pandas": ("pandas", "<= 0.2"),
}
"""Result -> (the engine ray_assets is divided by, the goal)."""
BASELINE_NAMES = {
    "duckdb": "DuckDB SQL over the Parquet files, deltalake.write_deltalake",
    "polars": "polars lazy query, collect(engine='streaming'), deltalake.write_deltalake",
    "pandas": "pandas file by file with partial groupby sums, deltalake.write_deltalake",
}


@dataclass(frozen=True)
class EngineRun:
    """One engine's process: the job's seconds (timed inside), Ray's start-up, the wall time,
    and its process id (a Ray engine's Ray logs are under `/tmp/ray/session_*_<pid>/`)."""

    job_s: float
    setup_s: float
    wall_s: float
    pid: int
    peak_rss_bytes: int


# ---------------------------------------------------------------------------- one process
def run_engine(
    engine: str, folder: Path, out: Path, timeout_s: float, env: Mapping[str, str] | None = None
) -> EngineRun:
    """Run `engine` over the input `folder` in a fresh process of this interpreter, with `env`
    added to its environment; its table goes to `out/<engine>/`, its log to `out/<engine>.log`.

    Raises RuntimeError with the end of the log when the process fails or runs out of time.
    """
    engine_out = out / engine
    report = out / f"{engine}.json"
    log = out / f"{engine}.log"
    command = [
        sys.executable,
        str(HERE / "etl_engines.py"),
        engine,
        "--data",
        str(folder),
        "--out",
        str(engine_out),
        "--report",
        str(report),
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    began = time.perf_counter()
    with log.open("w") as log_file:
        try:
            process = subprocess.run(
                command,
                cwd=REPO,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
            failure = f"exit status {process.returncode}" if process.returncode else None
        except subprocess.TimeoutExpired:
            failure = f"no exit after {timeout_s:.0f} s"
    wall_s = time.perf_counter() - began
    if failure is not None or not report.exists():
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{engine}: {failure or 'no report'}; end of {log}:\n{tail}")
    measured = json.loads(report.read_text())
    return EngineRun(
        measured["job_s"], measured["setup_s"], wall_s, measured["pid"], measured["peak_rss_bytes"]
    )


def run_round(
    label: str, engines: list[str], data: InputData, root: Path, timeout_s: float
) -> tuple[dict[str, EngineRun], dict[str, float]]:
    """Every engine once, in the order given, into a fresh folder; then the outputs checked.

    Returns the runs and each engine's largest relative difference from its reference.
    """
    out = root / label
    out.mkdir(parents=True)
    runs: dict[str, EngineRun] = {}
    for engine in engines:
        run = runs[engine] = run_engine(engine, data.folder, out, timeout_s)
        print(
            f"[{label}] {engine:<10} job {run.job_s:8.2f} s   setup {run.setup_s:6.2f} s   "
            f"process {run.wall_s:8.2f} s   {data.rows / run.job_s:14,.0f} rows/s",
            flush=True,
        )
    worst = check_round({engine: out / engine for engine in engines}, data.expected)
    print(
        f"[{label}] outputs equal (largest relative difference of a sum: "
        f"{max(worst.values()):.1e})",
        flush=True,
    )
    return runs, worst


def rotated(engines: list[str], by: int) -> list[str]:
    """The engines in the order of round `by`: each round starts one engine later."""
    shift = by % len(engines)
    return engines[shift:] + engines[:shift]


# ---------------------------------------------------------------------------- the numbers
def ratio_per_round(
    seconds: dict[str, list[float]], numerator: str, denominator: str
) -> list[float]:
    """numerator's seconds / denominator's, round by round (both ran once in every round)."""
    return [a / b for a, b in zip(seconds[numerator], seconds[denominator], strict=True)]


def engine_details(runs: list[EngineRun]) -> dict[str, Any]:
    """One engine's rounds: job, setup and process seconds, with medians and spreads."""
    details: dict[str, Any] = {}
    for field in ("job_s", "setup_s", "wall_s"):
        values = [getattr(run, field) for run in runs]
        details[field] = [finite_or_none(v) for v in values]
        details[f"median_{field}"] = finite_or_none(median(values))
        details[f"spread_{field}"] = [finite_or_none(v) for v in spread(values)]
    details["pids"] = [run.pid for run in runs]
    return details


def ratio_details(seconds: dict[str, list[float]], numerator: str, denominator: str) -> Any:
    """numerator / denominator: the ratio of medians and the min-max of the per-round ratios."""
    if numerator not in seconds or denominator not in seconds:
        return None
    rounds = ratio_per_round(seconds, numerator, denominator)
    return {
        "value": finite_or_none(median(seconds[numerator]) / median(seconds[denominator])),
        "per_round": [finite_or_none(r) for r in rounds],
        "spread": [finite_or_none(v) for v in spread(rounds)],
    }


def versions() -> dict[str, str | None]:
    """The engines' versions (read from package metadata: nothing is imported here)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in ("duckdb", "polars", "pandas", "ray", "dagster", "deltalake"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


# ---------------------------------------------------------------------------- the command
def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=60_000_000, help="input rows (64 files)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (each engine once)")
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated subset of {','.join(ENGINES)}; duckdb (the reference) always runs",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up round")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds one engine process may take"
    )
    parser.add_argument("--out", default=None, help="keep the tables and logs in this folder")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.engines.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ENGINES))
    if unknown:
        parser.error(f"unknown engines {unknown}; choose among {list(ENGINES)}")
    if args.rows < FILES or args.rounds < 1:
        parser.error(f"need rows >= {FILES} (one per file at least) and rounds >= 1")
    return args, parser


def selected_engines(engines: str) -> list[str]:
    """The chosen engines in `ENGINES` order, with the reference among them."""
    chosen = {name.strip() for name in engines.split(",")} | {REFERENCE}
    return [engine for engine in ENGINES if engine in chosen]


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, root: Path) -> None:
    engines = selected_engines(args.engines)
    data = ensure_input(args.rows)
    print(
        f"etl: {args.rows:,} rows in {len(data.files)} files ({data.folder}), engines "
        f"{', '.join(engines)}, {args.rounds} round(s), tables and logs under {root}",
        flush=True,
    )
    warmup: dict[str, float] = {}
    if not args.no_warmup:
        runs, _ = run_round("warmup", engines, data, root, args.timeout)
        warmup = {engine: run.job_s for engine, run in runs.items()}
        _clean(root / "warmup", keep=args.out is not None)

    per_engine: dict[str, list[EngineRun]] = {engine: [] for engine in engines}
    orders: list[list[str]] = []
    worst: dict[str, float] = dict.fromkeys(engines, 0.0)
    for index in range(args.rounds):
        order = rotated(engines, index)
        label = f"round{index + 1}"
        runs, differences = run_round(label, order, data, root, args.timeout)
        for engine in engines:
            per_engine[engine].append(runs[engine])
            worst[engine] = max(worst[engine], differences[engine])
        orders.append(order)
        _clean(root / label, keep=args.out is not None)

    seconds = {engine: [run.job_s for run in runs] for engine, runs in per_engine.items()}
    print_summary(per_engine)
    details = {
        "rows": args.rows,
        "files": len(data.files),
        "rounds": args.rounds,
        "engines": engines,
        "order_per_round": orders,
        "timed": "job_s: inside each engine's own fresh process, around the job only (imports "
        "and Ray's start-up excluded, the latter reported as setup_s); wall_s: the whole "
        "process, measured by the parent",
        "spread_of_ratios": "min-max of the ratio taken within each round (each round runs "
        "every engine once); the value is the ratio of the medians",
        "per_engine": {engine: engine_details(runs) for engine, runs in per_engine.items()},
        "ratios_job_s": {
            f"{a}/{b}": ratio_details(seconds, a, b)
            for a, b in [
                (SUBJECT, "duckdb"),
                (SUBJECT, "polars"),
                (SUBJECT, "pandas"),
                (SUBJECT, "ray_naive"),
                ("ray_naive", "duckdb"),
                ("ray_naive", "pandas"),
            ]
        },
        "ratios_wall_s": {
            f"{SUBJECT}/{b}": ratio_details(
                {e: [run.wall_s for run in runs] for e, runs in per_engine.items()}, SUBJECT, b
            )
            for b in ("duckdb", "polars", "pandas", "ray_naive")
        },
        "verification": {
            "reference": "duckdb, itself checked against the generator's numpy totals",
            "largest_relative_sum_difference": {e: float(f"{w:.3g}") for e, w in worst.items()},
        },
        "warmup_job_s": {engine: finite_or_none(s) for engine, s in warmup.items()},
        "versions": versions(),
    }
    write_results(seconds, details, reproduce_command("bench/etl.py", args, parser))


def write_results(seconds: dict[str, list[float]], details: dict[str, Any], command: str) -> None:
    """One result per baseline that ran alongside ray_assets."""
    for name, (baseline, goal) in RESULTS.items():
        if SUBJECT not in seconds or baseline not in seconds:
            print(f"{name}: not written ({SUBJECT} and {baseline} did not both run)", flush=True)
            continue
        write_result(
            name,
            median(seconds[SUBJECT]) / median(seconds[baseline]),
            unit="x",
            better="lower",
            goal=goal,
            baseline=BASELINE_NAMES[baseline],
            command=command,
            details=details,
            spread=spread(ratio_per_round(seconds, SUBJECT, baseline)),
        )


def print_summary(per_engine: dict[str, list[EngineRun]]) -> None:
    print("medians (min-max) over the rounds:", flush=True)
    for engine, runs in per_engine.items():
        job = [run.job_s for run in runs]
        wall = [run.wall_s for run in runs]
        print(
            f"  {engine:<10} job {shown(median(job), spread(job), ' s')}   "
            f"process {shown(median(wall), spread(wall), ' s')}",
            flush=True,
        )


def _clean(folder: Path, keep: bool) -> None:
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args, parser = parse_args(argv)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-etl-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        return exit_code_of(lambda: run(args, parser, root))
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    exit_now(main())
