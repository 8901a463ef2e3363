"""Small-run benchmark: one day of the reference pipeline through Dagster + ray_assets on a warm
shared local Ray head vs the same transforms as a dagster-deltalake-pandas user writes them
(`small_run_vs_pandas`).

A day of 20,000 orders is a typical small daily run; a user weighing ray_assets against
dagster-deltalake-pandas pays our fixed costs (Ray tasks, shuffles, exactly-once commits) on
every such run, so they must stay within a small factor of what that user runs today. Both sides
are fresh Dagster run processes, because that is what each user's daily run is.

  ours      a fresh `dagster asset materialize -m definitions` process (`RAY_ASSETS_ENV=local`:
            the shared local head) that materializes `customers` and the four daily assets for
            2024-01-01 into a fresh table root, timed from process start to exit.
  baseline  a fresh `dagster asset materialize -f bench/small_run_pandas_defs.py --select '*'
            --partition 2024-01-01` process in `bench/.venv-dagster-deltalake/`
            (`bench/_baseline_venv.py`: dagster-deltalake-pandas 0.29.27 pins dagster 1.13.27):
            the same five assets as pandas Dagster assets with the transforms of
            `bench/small_run_pandas.py`, the daily ones on the same `DailyPartitionsDefinition`
            with `partition_expr` metadata, stored and loaded by `DeltaLakePandasIOManager` under
            a fresh root, steps in process as ours; timed from process start to exit. The mixed
            selection (unpartitioned `customers` with the daily assets) runs as one run with
            `--partition` in dagster 1.13.27, as it does for ours. Its day column `order_date` is
            a `date`: dagster-deltalake cannot build its partition-overwrite predicate for a
            string day column and silently overwrites the whole table instead.
  plain     (reported, not the goal) a fresh `bench/small_run_pandas.py` process: the same
            transforms with `deltalake.write_deltalake`, no Dagster, nothing read back;
            `details.plain_pandas` holds its seconds, steps and ratio.

The head runs in a temporary folder with its own token, is warmed by one untimed run of each
side, and is stopped at the end. Timed runs alternate ours, baseline, plain, ours, ... into fresh
roots, each side with a Dagster instance of its own (the two Dagster versions differ). Each
repeat is verified against ours, for both pandas sides: the `daily_region_revenue` tables hold
the same regions and order counts, and revenue and average within 0.01, for the day only (the
day compared as a string: ours stores text, the baseline a date); `customers`, `raw_orders`,
`clean_orders` and `orders_enriched` hold as many rows on every side (read from the Delta logs
and the Parquet files the logs list, never through a deltalake scan, which can abort the
process at exit).

value = median(ours s) / median(baseline s), goal <= 3; the spread is the min-max of the
per-repeat ratios. `details.ours_step_s` and `details.baseline_step_s` say where each Dagster
run spends its time, from its instance's event log: each step's seconds, `startup` (process
start to the run's start: interpreter, imports, loading the code location), `exit` (the run's
end to the process's exit) and `other` (resources, ours' head connection, Dagster between
steps); `details.connect_s` holds the seconds ours took to find the head and connect.

Run: `.venv/bin/python bench/small_run.py [--rows-per-day N] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script, not a package

import pyarrow as pa  # noqa: E402
from _baseline_venv import ensure_baseline_venv  # noqa: E402
from _head import stop_head  # noqa: E402
from _results import (  # noqa: E402
    VerificationError,
    exit_code_of,
    exit_now,
    median,
    reproduce_command,
    spread,
    write_result,
)
from fresh_process import CONNECT  # noqa: E402

if TYPE_CHECKING:
    from definitions.sources import OrderSource

REPO = Path(__file__).resolve().parent.parent
DAY = "2024-01-01"
ASSETS = ["customers", "raw_orders", "clean_orders", "orders_enriched", "daily_region_revenue"]
COUNTED = ["customers", "raw_orders", "clean_orders", "orders_enriched"]
"""The tables whose row counts must agree on every side (`daily_region_revenue` is compared
row by row)."""
BASELINE_DEFS = "bench/small_run_pandas_defs.py"
BASELINE_SCHEMA = "public"
"""The folder DeltaLakePandasIOManager puts its tables in when an asset key has no prefix."""
BASELINE_PACKAGES = (
    "dagster",
    "dagster-deltalake",
    "dagster-deltalake-pandas",
    "deltalake",
    "pandas",
)
MONEY_TOLERANCE = 0.01
TIMEOUT_S = 900
SIGABRT_EXIT = -6
"""`subprocess`'s return code of a process that aborted (exit status 134 in a shell)."""


def run_timed(
    command: list[str], environment: dict[str, str], what: str, *, abort_ok: bool = False
) -> tuple[float, str, bool]:
    """Wall seconds of a fresh process from start to exit, its output, and whether it aborted.

    It fails if the process failed. With `abort_ok`, an abort (SIGABRT) is returned rather than
    raised, for the caller to accept only if the run's event log says the run succeeded: a
    deltalake scan can abort a process at interpreter teardown, after all its work is done
    (`/work/shared/research/pitfalls.md`), and the benchmark reports that instead of dying.
    """
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    seconds = time.perf_counter() - started
    aborted = abort_ok and done.returncode == SIGABRT_EXIT
    if done.returncode != 0 and not aborted:
        raise RuntimeError(f"{what} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr, aborted


def run_ours(environment: dict[str, str], root: Path) -> dict[str, Any]:
    """One `dagster asset materialize` of the day: seconds, where they went, connect seconds."""
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize"]
    command += ["-m", "definitions", "--select", ",".join(ASSETS), "--partition", DAY]
    started_at = time.time()
    seconds, _, _ = run_timed(
        command, {**environment, "RAY_ASSETS_TABLE_ROOT": str(root)}, "dagster asset materialize"
    )
    steps, connect = where_the_run_went(Path(environment["DAGSTER_HOME"]), started_at, seconds)
    return {"seconds": seconds, "steps": steps, "connect": connect}


def run_baseline(
    python: Path,
    environment: dict[str, str],
    dagster_home: Path,
    root: Path,
    sizes: tuple[int, int, int],
) -> dict[str, Any]:
    """One `dagster asset materialize` of the day in the baseline's venv: seconds and where they
    went (from its own instance's event log), and whether it aborted at exit."""
    rows_per_day, customers, seed = sizes
    command = [str(python.parent / "dagster"), "asset", "materialize", "-f", BASELINE_DEFS]
    command += ["--select", "*", "--partition", DAY]
    settings = {
        "DAGSTER_HOME": str(dagster_home),
        "SMALL_RUN_TABLE_ROOT": str(root),
        "SMALL_RUN_ROWS_PER_DAY": str(rows_per_day),
        "SMALL_RUN_CUSTOMERS": str(customers),
        "SMALL_RUN_SEED": str(seed),
    }
    started_at = time.time()
    what = "the baseline's dagster asset materialize"
    seconds, _, aborted = run_timed(command, {**environment, **settings}, what, abort_ok=True)
    steps, _ = where_the_run_went(dagster_home, started_at, seconds)
    return {"seconds": seconds, "steps": steps, "aborted": aborted}


def where_the_run_went(
    dagster_home: Path, started_at: float, seconds: float
) -> tuple[dict[str, float], float | None]:
    """Seconds per part of the newest run, from the instance's event log, and its connect seconds.

    Each asset's step seconds as Dagster records them; `startup`: process start to the run's
    start (interpreter, imports, loading the code location, creating the run); `exit`: the run's
    end to the process's exit; `other`: the rest (resources with the head connection, Dagster
    between steps). Read from the event log, not the console: under load Dagster's compute-log
    capture can drop a step's last console lines (its STEP_SUCCESS included) when the step ends.
    """
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    run = instance.get_runs(limit=1)[0]
    records = instance.all_logs(run.run_id)
    steps: dict[str, float] = {}
    run_start = run_end = None
    connect = None
    for record in records:
        kind = record.dagster_event_type
        if kind == dg.DagsterEventType.RUN_START:
            run_start = record.timestamp
        elif kind == dg.DagsterEventType.RUN_SUCCESS:
            run_end = record.timestamp
        elif kind == dg.DagsterEventType.STEP_SUCCESS and record.step_key:
            duration_ms = record.get_dagster_event().event_specific_data.duration_ms
            steps[record.step_key] = duration_ms / 1000
        elif found := CONNECT.search(record.user_message or ""):
            connect = float(found.group(1)) + float(found.group(2))
    if sorted(steps) != sorted(ASSETS) or run_start is None or run_end is None:
        raise VerificationError(
            f"run {run.run_id} ({run.status.value}) records steps {sorted(steps)}, not {ASSETS}"
        )
    parts = {"startup": run_start - started_at, **steps, "exit": started_at + seconds - run_end}
    parts["other"] = seconds - sum(parts.values())
    return parts, connect


def run_plain(
    environment: dict[str, str], root: Path, sizes: tuple[int, int, int]
) -> dict[str, Any]:
    """One `bench/small_run_pandas.py` process: seconds, and the step seconds it printed
    (`other`: interpreter start, imports and exit)."""
    rows_per_day, customers, seed = sizes
    command = [sys.executable, "bench/small_run_pandas.py", str(root), "--day", DAY]
    command += ["--rows-per-day", str(rows_per_day), "--customers", str(customers)]
    command += ["--seed", str(seed)]
    seconds, output, _ = run_timed(command, environment, "bench/small_run_pandas.py")
    printed = [line for line in output.splitlines() if line.startswith('{"step_s"')]
    steps = json.loads(printed[-1])["step_s"]
    steps["other"] = seconds - sum(steps.values())
    return {"seconds": seconds, "steps": steps}


def add_actions(table: Path) -> list[dict[str, Any]]:
    """The table's live files from its Delta log (path, partition values, rows): no data scan."""
    from deltalake import DeltaTable

    return pa.table(DeltaTable(str(table)).get_add_actions(flatten=True)).to_pylist()


def table_rows(table: Path) -> int:
    """Rows of a Delta table, from the row counts its log records per file."""
    return sum(action["num_records"] for action in add_actions(table))


def read_revenue(table: Path) -> list[dict[str, Any]]:
    """`daily_region_revenue` rows sorted by region, read file by file with pyarrow.

    The files the Delta log lists are read with pyarrow's own Parquet reader and each file's
    `order_date` comes from the log (partition columns are not stored in the files): a deltalake
    scan would risk aborting this process at exit (`/work/shared/research/pitfalls.md`). The day
    is kept as its ISO text, so ours (a string column) and the baseline's (a `date`) compare.
    """
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for action in add_actions(table):
        data = pq.read_table(table / urllib.parse.unquote(action["path"]))
        for row in data.select(["region", "revenue", "orders", "avg_order_value"]).to_pylist():
            rows.append({**row, "order_date": str(action["partition.order_date"])})
    return sorted(rows, key=lambda row: row["region"])


def verify(ours: Path, theirs: Path, side: str) -> int:
    """`theirs` (the `side` tables) and ours hold the same day: equal revenue per region, equal
    rows in the other four tables; return the revenue rows."""
    for name in COUNTED:
        counts = table_rows(ours / name), table_rows(theirs / name)
        if counts[0] != counts[1]:
            raise VerificationError(f"{name}: ours holds {counts[0]} rows, {side} {counts[1]}")
    mine = read_revenue(ours / "daily_region_revenue")
    other = read_revenue(theirs / "daily_region_revenue")

    def keys(rows: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
        return [(row["order_date"], row["region"], row["orders"]) for row in rows]

    if keys(mine) != keys(other) or {row["order_date"] for row in mine} != {DAY}:
        raise VerificationError(f"daily_region_revenue differs:\nours   {mine}\n{side} {other}")
    for a, b in zip(mine, other, strict=True):
        for column in ("revenue", "avg_order_value"):
            if abs(a[column] - b[column]) > MONEY_TOLERANCE:
                raise VerificationError(
                    f"daily_region_revenue {a['region']}.{column}: ours {a[column]}, "
                    f"{side} {b[column]}"
                )
    return len(mine)


def environment_for(scratch: Path, rows_per_day: int) -> dict[str, str]:
    """Both sides' environment: a head folder and Ray token of the benchmark's own, a scratch
    Dagster instance (`home`; the baseline's is `home-baseline`), the reference location's
    `local` resources sized to `rows_per_day`."""
    token = scratch / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    (scratch / "home").mkdir()
    (scratch / "home-baseline").mkdir()  # the baseline's Dagster (1.13.27) keeps its own
    return {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "RAY_USAGE_STATS_ENABLED": "0",
        "DAGSTER_HOME": str(scratch / "home"),
        "RAY_ASSETS_ENV": "local",
        "RAY_ASSETS_HEAD_DIR": str(scratch / "head"),
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_ASSETS_ROWS_PER_DAY": str(rows_per_day),
        "RAY_ASSETS_LANDING_DIR": str(scratch / "landing"),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=20_000, help="orders of the day")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each side")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-small-run-"))
    environment = environment_for(scratch, args.rows_per_day)
    try:
        return exit_code_of(lambda: run(args, parser, scratch, environment))
    finally:
        stop_head(scratch / "head", environment)
        shutil.rmtree(scratch, ignore_errors=True)


def run(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    scratch: Path,
    environment: dict[str, str],
) -> None:
    from definitions.sources import OrderSource

    python = ensure_baseline_venv()
    source = OrderSource(rows_per_day=args.rows_per_day)  # the sizes `local` resources use
    sizes = (args.rows_per_day, source.customers, source.seed)
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": [], "plain": []}
    revenue_rows = 0
    for repeat in range(args.repeats + 1):  # repeat 0 warms up (and starts the head)
        roots = {side: scratch / f"{side}-{repeat}" for side in runs}
        mine = run_ours(environment, roots["ours"])
        theirs = run_baseline(
            python, environment, scratch / "home-baseline", roots["baseline"], sizes
        )
        plain = run_plain(environment, roots["plain"], sizes)
        revenue_rows = verify(roots["ours"], roots["baseline"] / BASELINE_SCHEMA, "baseline")
        verify(roots["ours"], roots["plain"], "plain pandas")
        for root in roots.values():
            shutil.rmtree(root, ignore_errors=True)
        label = f"[{repeat}/{args.repeats}]" if repeat else "[warm-up]"
        print(
            f"{label} ours {mine['seconds']:6.2f} s, dagster+pandas {theirs['seconds']:5.2f} s"
            f"{' (aborted at exit)' if theirs['aborted'] else ''}, plain pandas "
            f"{plain['seconds']:5.2f} s; ours steps "
            + ", ".join(f"{k} {v:.2f}" for k, v in mine["steps"].items())
            + "; dagster+pandas steps "
            + ", ".join(f"{k} {v:.2f}" for k, v in theirs["steps"].items()),
            flush=True,
        )
        if repeat:
            for side, result in zip(runs, (mine, theirs, plain), strict=True):
                runs[side].append(result)
    report(args, parser, source, runs, revenue_rows, baseline_versions(python))


def baseline_versions(python: Path) -> dict[str, str]:
    """The versions of the baseline's moving parts, as installed in its venv (untimed)."""
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    )
    done = subprocess.run(
        [str(python), "-c", code, *BASELINE_PACKAGES], capture_output=True, text=True, timeout=60
    )
    return json.loads(done.stdout) if done.returncode == 0 else {}


def per_step(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each step's median, spread and per-repeat seconds."""
    names = list(runs[0]["steps"])
    return {
        name: {
            "median": round(median([r["steps"][name] for r in runs]), 3),
            "spread": [round(x, 3) for x in spread([r["steps"][name] for r in runs])],
            "runs": [round(r["steps"][name], 3) for r in runs],
        }
        for name in names
    }


def report(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    source: OrderSource,
    runs: dict[str, list[dict[str, Any]]],
    revenue_rows: int,
    versions: dict[str, str],
) -> None:
    seconds = {side: [round(r["seconds"], 3) for r in results] for side, results in runs.items()}
    ratios = {
        side: [o / b for o, b in zip(seconds["ours"], seconds[side], strict=True)]
        for side in ("baseline", "plain")
    }
    connect = [r["connect"] for r in runs["ours"] if r["connect"] is not None]
    day_of = f"one day ({args.rows_per_day:,} orders, {source.customers:,} customers)"
    write_result(
        "small_run_vs_pandas",
        median(seconds["ours"]) / median(seconds["baseline"]),
        unit="x",
        better="lower",
        goal="<= 3",
        baseline=(
            f"{day_of} of the reference pipeline's five assets as a dagster-deltalake-pandas "
            "user writes them: pandas Dagster assets (daily ones partitioned, partition_expr on "
            "a date-typed order_date) stored by DeltaLakePandasIOManager, in-process executor, "
            f"materialized by a fresh `dagster asset materialize -f {BASELINE_DEFS} --select '*' "
            f"--partition {DAY}` process in bench/.venv-dagster-deltalake (dagster "
            f"{versions.get('dagster', '?')}); value = median(ours: fresh `dagster asset "
            "materialize` process on the warm shared head, s) / median(baseline process, s), "
            "both from process start to exit"
        ),
        command=reproduce_command("bench/small_run.py", args, parser),
        details={
            "day": DAY,
            "rows_per_day": args.rows_per_day,
            "customers": source.customers,
            "revenue_rows": revenue_rows,
            "repeats": args.repeats,
            "seconds": {side: seconds[side] for side in ("ours", "baseline")},
            "median_s": {side: round(median(seconds[side]), 3) for side in ("ours", "baseline")},
            "spread_s": {side: spread(seconds[side]) for side in ("ours", "baseline")},
            "per_repeat_ratio": [round(r, 3) for r in ratios["baseline"]],
            "ours_step_s": per_step(runs["ours"]),
            "baseline_step_s": per_step(runs["baseline"]),
            "baseline_aborted_at_exit": sum(r["aborted"] for r in runs["baseline"]),
            "baseline_versions": versions,
            "connect_s": {
                "median": round(median(connect), 3) if connect else None,
                "spread": spread(connect) if connect else None,
                "runs": [round(x, 3) for x in connect],
            },
            "plain_pandas": {
                "what": (
                    "reported, not the goal: the same transforms in a fresh plain pandas process "
                    "without Dagster, each table written with deltalake.write_deltalake and "
                    "nothing read back (bench/small_run_pandas.py, project venv)"
                ),
                "seconds": seconds["plain"],
                "median_s": round(median(seconds["plain"]), 3),
                "spread_s": spread(seconds["plain"]),
                "ratio": round(median(seconds["ours"]) / median(seconds["plain"]), 3),
                "ratio_spread": [round(x, 3) for x in spread(ratios["plain"])],
                "per_repeat_ratio": [round(r, 3) for r in ratios["plain"]],
                "step_s": per_step(runs["plain"]),
            },
            "verification": (
                "after every repeat, against ours, for the baseline and plain pandas: "
                "daily_region_revenue equal per region (day as text, orders, revenue and "
                f"average within {MONEY_TOLERANCE}), row counts of {', '.join(COUNTED)} equal: "
                "passed"
            ),
        },
        spread=spread(ratios["baseline"]),
    )
    plain = runs["plain"]
    print(
        f"plain pandas (not the goal): {median(seconds['plain']):.2f} s, ours / plain "
        f"{median(seconds['ours']) / median(seconds['plain']):.2f}x "
        f"({min(ratios['plain']):.2f}–{max(ratios['plain']):.2f}x) over {len(plain)} repeats",
        flush=True,
    )


if __name__ == "__main__":
    exit_now(main())
