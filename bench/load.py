"""Load runs of the fault matrix (L01, L02, L04, L06): many Dagster runs against one Delta table.

Every run is a real `dagster.materialize` of a daily `ray_asset` through `DeltaIOManager`, on one
Dagster instance (SQLite storage in a temporary DAGSTER_HOME) and one Ray, in this process;
concurrent runs are threads, as concurrent run workers would be processes: what they share is the
table, its commit protocol and the Ray cluster.

  L01  D daily partitions (default 365), one run per partition, k runs at once for k in
       1, 4, 8, 16 (a pool limit): each a fresh table.
  L02  the same with 48 runs at once (unbounded for this machine: where delta-rs's own commit
       retries ran out in the research's experiment 14).
  L04  two partitions of one table written at once, R rounds (default 100): after every round
       each partition holds exactly that round's rows (no lost update).
  L06  (shortened) N runs (default 200), 4 at once, while a thread SIGKILLs a Ray worker that
       runs a pipeline task every few seconds; a failed run is retried (as Dagster's run
       retries do) up to 3 times. Then the maintenance reclaims what the failed attempts and the
       killed tasks left: afterwards the table's folder holds exactly the files of its log.

Checked after each: every partition committed exactly once (table versions == runs, rows per
day exact, no duplicate ids), Dagster's materialized partitions == the days. Reported: wall
time, p50/p95 run latency, commit attempts (more than 1: a lost race, retried), failures.

Each load writes `bench/results/load_<name>.json` whose value is the fraction of partitions
committed exactly once (goal == 1): these are correctness runs, so the times are details.

Run: `.venv/bin/python bench/load.py [--days D] [--levels 1,4,8,16] [--rounds R] [--soak N]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script, not a package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import (  # noqa: E402
    VerificationError,
    exit_code_of,
    reproduce_command,
    write_result,
)

ROWS_PER_DAY = 500


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument("--unbounded", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--soak", type=int, default=200)
    parser.add_argument("--soak-rows", type=int, default=300_000)
    parser.add_argument("--only", default="L01,L02,L04,L06")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return exit_code_of(lambda: run(args, parser))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Loader:
    """The asset, the instance and the runs of one load."""

    def __init__(self, root: Path, days: list[str], rows_per_day: int = ROWS_PER_DAY) -> None:
        import dagster as dg
        import ray.data

        from ray_assets import DeltaIOManager, RayResource, ray_asset

        self.dg = dg
        self.root = root
        self.rows_per_day = rows_per_day
        self.partitions = dg.StaticPartitionsDefinition(days)
        home = root / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        # no compute-log capture: it swaps the process's stdout/stderr descriptors per run,
        # which concurrent runs in one process would leave pointing at a deleted file
        self.instance = dg.DagsterInstance.local_temp(
            str(home),
            overrides={
                "compute_logs": {
                    "module": "dagster._core.storage.noop_compute_log_manager",
                    "class": "NoOpComputeLogManager",
                }
            },
        )

        @ray_asset(partitions_def=self.partitions, partition_column="order_date", name="orders")
        def orders(context):  # noqa: ANN001, ANN202 - Dagster reads annotations at runtime
            day = context.partition_key
            first = self.partitions.get_partition_keys().index(day) * rows_per_day
            tag = context.run.tags.get("load/round", "0")

            def rows(batch: dict) -> dict:
                import numpy as np

                ids = batch["id"] + first
                return {
                    "order_id": ids,
                    "order_date": np.full(len(ids), day, dtype=object),
                    "round": np.full(len(ids), int(tag), dtype=np.int64),
                    "amount": ids * 0.25,
                }

            return ray.data.range(rows_per_day, override_num_blocks=1).map_batches(rows)

        self.asset = orders
        self.resources = {
            "ray": RayResource(),
            "delta_io_manager": DeltaIOManager(root_uri=str(root / "tables")),
        }

    def materialize(self, day: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        result = self.dg.materialize(
            [self.asset],
            partition_key=day,
            resources=self.resources,
            instance=self.instance,
            tags=tags or {},
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        seconds = time.perf_counter() - started
        attempts = 0
        if result.success:
            event = result.get_asset_materialization_events()[0]
            attempts = int(event.materialization.metadata["delta/commit_attempts"].value)
        return {"day": day, "ok": result.success, "seconds": seconds, "attempts": attempts}

    def store(self) -> Any:
        from ray_assets import DeltaStore

        return DeltaStore(str(self.root / "tables" / "orders"))

    def rows_by_day(self) -> dict[str, int]:
        import pyarrow as pa

        table = self.store().open_table()
        counts: dict[str, int] = {}
        for action in pa.table(table.get_add_actions(flatten=True)).to_pylist():
            day = action["partition.order_date"]
            counts[day] = counts.get(day, 0) + action["num_records"]
        return counts


def run_many(loader: Loader, days: list[str], at_once: int) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        return list(pool.map(loader.materialize, days))


def check_exactly_once(loader: Loader, days: list[str], runs: int) -> int:
    """The number of days committed exactly once; raises on anything a load must never do."""
    import dagster as dg

    store = loader.store()
    version = store.version()
    if version != runs - 1:
        raise VerificationError(f"{runs} committed runs made table version {version}")
    counts = loader.rows_by_day()
    materialized = loader.instance.get_materialized_partitions(dg.AssetKey("orders"))
    if materialized != set(days):
        raise VerificationError(f"Dagster sees {len(materialized)} of {len(days)} days")
    return sum(1 for day in days if counts.get(day) == loader.rows_per_day)


def load_concurrent_runs(args: argparse.Namespace, level: int, name: str) -> dict[str, Any]:
    import dagster as dg

    days = dg.DailyPartitionsDefinition(start_date="2024-01-01").get_partition_keys()[: args.days]
    with tempfile.TemporaryDirectory(prefix=f"load-{name}-") as folder:
        loader = Loader(Path(folder), days)
        started = time.perf_counter()
        outcomes = run_many(loader, days, level)
        wall = time.perf_counter() - started
        failed = [o["day"] for o in outcomes if not o["ok"]]
        if failed:
            raise VerificationError(f"{name} k={level}: {len(failed)} runs failed: {failed[:5]}")
        exact = check_exactly_once(loader, days, len(days))
    seconds = [o["seconds"] for o in outcomes]
    attempts = [o["attempts"] for o in outcomes]
    line = {
        "at_once": level,
        "runs": len(days),
        "wall_s": round(wall, 1),
        "p50_s": round(statistics.median(seconds), 2),
        "p95_s": round(percentile(seconds, 0.95), 2),
        "commit_attempts_max": max(attempts),
        "runs_that_retried_their_commit": sum(1 for a in attempts if a > 1),
        "exactly_once": exact,
    }
    print(f"{name} k={level}: {line}", flush=True)
    return line


def load_two_partitions(args: argparse.Namespace) -> dict[str, Any]:
    days = ["2024-01-01", "2024-01-02"]
    lost = 0
    attempts: list[int] = []
    with tempfile.TemporaryDirectory(prefix="load-L04-") as folder:
        loader = Loader(Path(folder), days)
        import pyarrow as pa
        import pyarrow.compute as pc
        import ray

        from ray_assets import PartitionSlice

        started = time.perf_counter()
        for round_number in range(1, args.rounds + 1):
            tags = {"load/round": str(round_number)}
            with ThreadPoolExecutor(max_workers=2) as pool:
                outcomes = list(pool.map(lambda d, t=tags: loader.materialize(d, t), days))
            if not all(o["ok"] for o in outcomes):
                raise VerificationError(f"round {round_number}: a run failed: {outcomes}")
            attempts += [o["attempts"] for o in outcomes]
            store = loader.store()
            for day in days:
                one = PartitionSlice.from_keys(
                    loader.partitions, [day], "order_date", asset_key="orders"
                )
                refs = store.read(one, columns=["round"]).to_arrow_refs()
                read = pa.concat_tables(ray.get(refs))["round"]
                values, rows = pc.unique(read).to_pylist(), len(read)
                if values != [round_number] or rows != ROWS_PER_DAY:
                    lost += 1
        wall = time.perf_counter() - started
        version = loader.store().version()
    line = {
        "rounds": args.rounds,
        "lost_updates": lost,
        "table_version": version,
        "wall_s": round(wall, 1),
        "commit_attempts_max": max(attempts),
        "runs_that_retried_their_commit": sum(1 for a in attempts if a > 1),
    }
    if version != 2 * args.rounds - 1:
        raise VerificationError(f"L04: {2 * args.rounds} runs made table version {version}")
    print(f"L04: {line}", flush=True)
    return line


def pipeline_workers() -> list[Any]:
    """This process's Ray's workers running a pipeline task now (never Ray Data's own actors,
    never another Ray on the machine)."""
    import psutil

    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            title = " ".join(process.cmdline()) or process.name()
        except psutil.Error:
            continue
        if title.startswith("ray::") and any(
            step in title for step in ("ReadRange", "MapBatches", "Write")
        ):
            found.append(process)
    return found


def load_soak_with_killer(args: argparse.Namespace) -> dict[str, Any]:
    import dagster as dg

    from ray_assets.maintenance import reclaim_orphans

    days = dg.DailyPartitionsDefinition(start_date="2024-01-01").get_partition_keys()[: args.soak]
    kills = 0
    stop = threading.Event()

    def killer() -> None:
        nonlocal kills
        chooser = random.Random(14)
        while not stop.wait(chooser.uniform(1.0, 3.0)):
            workers = pipeline_workers()
            if workers:
                try:
                    os.kill(chooser.choice(workers).pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass

    with tempfile.TemporaryDirectory(prefix="load-L06-") as folder:
        # partitions big enough that a pipeline task runs long enough to be killed
        loader = Loader(Path(folder), days, rows_per_day=args.soak_rows)
        thread = threading.Thread(target=killer, daemon=True)
        started = time.perf_counter()
        thread.start()
        pending, attempts_by_day, failures = list(days), dict.fromkeys(days, 0), 0
        try:
            for _ in range(4):  # the first attempt and up to 3 retries
                if not pending:
                    break
                for day in pending:
                    attempts_by_day[day] += 1
                outcomes = run_many(loader, pending, 4)
                failures += sum(1 for o in outcomes if not o["ok"])
                pending = [o["day"] for o in outcomes if not o["ok"]]
        finally:
            stop.set()
            thread.join()
        wall = time.perf_counter() - started
        if pending:
            raise VerificationError(f"L06: {len(pending)} days failed 4 times: {pending[:5]}")
        exact = check_exactly_once(loader, days, len(days))
        store = loader.store()
        # every run is over: what no commit added is reclaimed whatever its age
        removed, removed_bytes, _ = reclaim_orphans(
            store, lambda _write: True, abandoned_after=dt.timedelta(0)
        )
        table_dir = Path(folder) / "tables" / "orders"
        disk_files = {  # data files: the log's checkpoints are Parquet too
            str(p.relative_to(table_dir))
            for p in table_dir.rglob("*.parquet")
            if not str(p.relative_to(table_dir)).startswith("_")
        }
        log_files = {uri.split("/orders/", 1)[-1] for uri in store.open_table().file_uris()}
        on_disk, in_log = len(disk_files), len(log_files)
        extra_files = sorted(disk_files - log_files)[:10]
    line = {
        "runs": len(days),
        "worker_kills": kills,
        "failed_attempts": failures,
        "wall_s": round(wall, 1),
        "exactly_once": exact,
        "orphans_reclaimed": len(removed),
        "orphan_bytes_reclaimed": removed_bytes,
        "data_files_on_disk_after": on_disk,
        "data_files_in_the_log": in_log,
    }
    if on_disk != in_log:
        raise VerificationError(
            f"L06: {on_disk} data files on disk, {in_log} in the log: {extra_files}"
        )
    print(f"L06: {line}", flush=True)
    return line


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from ray.data import DataContext

    from ray_assets import RayResource

    RayResource().ensure_started()
    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("dagster").setLevel(logging.WARNING)
    command = reproduce_command("bench/load.py", args, parser)
    only = set(args.only.split(","))
    if "L01" in only:
        lines = [load_concurrent_runs(args, int(level), "L01") for level in args.levels.split(",")]
        write_fraction(
            "load_L01_concurrent_runs",
            sum(line["exactly_once"] for line in lines) / sum(line["runs"] for line in lines),
            f"{args.days} daily partitions, one Dagster run each, k runs at once for "
            f"k in {args.levels}, each level a fresh Delta table; value = partitions committed "
            "exactly once / partitions",
            command,
            {"levels": lines},
        )
    if "L02" in only:
        line = load_concurrent_runs(args, args.unbounded, "L02")
        write_fraction(
            "load_L02_unbounded_runs",
            line["exactly_once"] / line["runs"],
            f"{args.days} daily partitions, one Dagster run each, {args.unbounded} at "
            "once; value = partitions committed exactly once / partitions",
            command,
            line,
        )
    if "L04" in only:
        line = load_two_partitions(args)
        write_fraction(
            "load_L04_two_partitions",
            1 - line["lost_updates"] / (2 * line["rounds"]),
            f"two partitions of one table written at once, {args.rounds} rounds; "
            "value = partition-rounds that hold exactly their round's rows / partition-rounds",
            command,
            line,
        )
    if "L06" in only:
        line = load_soak_with_killer(args)
        write_fraction(
            "load_L06_soak_with_worker_kills",
            line["exactly_once"] / line["runs"],
            f"{args.soak} runs of {args.soak_rows:,} rows, 4 at once, a Ray pipeline worker "
            "SIGKILLed every 1-3 s, failed runs retried up to 3 times; value = partitions "
            "committed exactly once / partitions",
            command,
            line,
        )


def write_fraction(
    name: str, value: float, baseline: str, command: str, details: dict[str, Any]
) -> None:
    """Every load's result: the fraction of what it wrote that is exactly right (goal 1)."""
    write_result(
        name,
        value,
        unit="fraction",
        better="higher",
        goal=">= 1",
        baseline=baseline,
        command=command,
        details=details,
    )


if __name__ == "__main__":
    sys.exit(main())
