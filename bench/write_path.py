"""Write-path benchmark: the same orders written to a partitioned Delta table three ways.

Two datasets of 16M rows over 16 days (by default), each written by all three methods and run
once more through the pipeline alone:
`narrow` (seven columns derived from the row index with one hash: cheap to generate, so the
timings are mostly the writing; the results' values) and `reference` (the reference pipeline's
raw orders from `definitions/generator.py`: nine columns with a timestamp and nulls, whose
generation takes longer than the writing; in the results' details).

  A  `ray_assets.DeltaStore.write`: Ray tasks write the Parquet files (checking every row's
     partition value against the run's slice as it streams by) and the driver makes one
     partition-scoped, idempotent commit that replaces exactly the run's partitions.
  B  Ray's own `Dataset.write_delta(path, partition_by=[...])`: the same shape (tasks write
     files, the driver commits once) but whole-table append/overwrite only, with no slice
     checks. It is the natural alternative a user already has, so ray_assets should beat it
     (`write_vs_ray_write_delta` = B / A, goal >= 1.5).
  C  One pyarrow stream of the same rows, produced in the driver by the same generator
     function, into `deltalake.write_deltalake(..., mode="overwrite")`: no Ray, no
     parallelism, no checks. It is the single-process lower bound of the work itself (generate,
     encode Parquet, commit), so it bounds what the parallel machinery costs on a small machine
     (`write_vs_pyarrow_stream` = A / C, goal <= 1.5).
  P  The pipeline alone: exactly the lazy dataset that A and B write, through the same
     streaming execution (`Dataset.write_datasink`), into a sink whose tasks only count the rows
     of the blocks they receive and discard them: generating the data in Ray tasks, with no
     Parquet encoding, no files and no commit. It is the floor under A and B: each one's *write
     cost* is its median minus P's, and `write_cost_vs_write_delta` = cost(A) / cost(B) (goal
     <= 0.5) compares what the two writes themselves add to running the pipeline. (B / A
     includes the same pipeline time on both sides, so it understates that difference, the
     more so the costlier the generation.)

Each run is timed end to end (pipeline execution + commit) into a fresh table folder; runs
alternate A, B, C, P, A, B, C, P, ... so drift of the machine hits every method alike, and
medians are compared. Every median is reported with the spread (min-max) of its 5 repeats (by
default); each ratio is the ratio of the medians, reported with the min-max of the same ratio
taken within each round (a round runs every method once, so round i gives B_i / A_i,
(A_i - P_i) / (B_i - P_i), ...). Before the timed runs, one small untimed run per method warms
Ray's workers and the imports in them (`--no-warmup` skips it). After each run the table is
verified from the Delta log alone (row count from the add actions' `num_records`, one
partition per day); the data is never scanned, because deltalake scans can abort the process at
exit on this machine. P is verified by the row count its sink saw.

Run: `.venv/bin/python bench/write_path.py [--rows N] [--days D] [--repeats R] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

# Set before Ray is imported anywhere: no usage-stats reporting from a benchmark.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script, not a package

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from _results import (  # noqa: E402
    VerificationError,
    exit_code_of,
    exit_now,
    finite_or_none,
    median,
    reproduce_command,
    shown,
    spread,
    timed,
    write_result,
)

from definitions.generator import ORDERS_SCHEMA, make_orders, mix64  # noqa: E402

START_DATE = dt.date(2024, 1, 1)
PARTITION_COLUMN = "order_date"
METHODS = ("A", "B", "C", "P")
TABLE_METHODS = ("A", "B", "C")
"""The methods that write a Delta table (verified from its log); P writes nothing."""
DATASETS = ("narrow", "reference")
"""Both are measured in one command; the results' values come from `narrow`, which isolates
the write path, and `details.datasets.reference` holds the reference pipeline's orders."""
METHOD_NAMES = {
    "A": "ray_assets.DeltaStore.write",
    "B": "ray Dataset.write_delta",
    "C": "pyarrow stream -> write_deltalake",
    "P": "pipeline alone (blocks discarded)",
}


# ---------------------------------------------------------------------------- the data
NARROW_SCHEMA = pa.schema(
    [
        ("order_id", pa.int64()),
        (PARTITION_COLUMN, pa.string()),
        ("customer_id", pa.int64()),
        ("amount", pa.float64()),
        ("quantity", pa.int32()),
        ("status", pa.string()),
        ("region", pa.string()),
    ]
)
"""Plain `string`, never `large_string`: Ray's write_delta mishandles large strings."""
_STATUSES = pa.array(["placed", "paid", "shipped", "delivered", "returned", "cancelled"])
_REGIONS = pa.array(["north", "south", "east", "west", "central"])


def day_keys(days: int) -> list[str]:
    """The partition keys (and `order_date` values) of `days` consecutive days."""
    return [(START_DATE + dt.timedelta(days=d)).isoformat() for d in range(days)]


def make_narrow_orders(batch: dict[str, np.ndarray], *, rows: int, days: int) -> pa.Table:
    """Seven order columns derived from the row index with one hash: cheap to generate, so the
    timings are mostly the writing. Index `i` is on day `i * days // rows` (contiguous days)."""
    ids = np.asarray(batch["id"], dtype=np.int64)
    h = mix64(ids)
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.int64()),
            pa.array(day_keys(days), pa.string()).take(pa.array((ids * days) // rows)),
            pa.array((h % np.uint64(1_000_000)).astype(np.int64) + 1, pa.int64()),
            pa.array(((h >> np.uint64(20)) % np.uint64(50_000)).astype(np.float64) / 100 + 1),
            pa.array(((h >> np.uint64(36)) % np.uint64(9)).astype(np.int32) + 1, pa.int32()),
            _STATUSES.take(pa.array((h >> np.uint64(40)) % np.uint64(len(_STATUSES)))),
            _REGIONS.take(pa.array((h >> np.uint64(50)) % np.uint64(len(_REGIONS)))),
        ],
        schema=NARROW_SCHEMA,
    )


def generator(data: str, rows: int, days: int) -> tuple[Callable[..., pa.Table], dict[str, Any]]:
    """The batch function of dataset `data` and its arguments, for `rows` rows over `days`.

    `narrow` isolates the write path; `reference` is the reference pipeline's raw orders (nine
    columns with a timestamp and nulls), whose generation costs more than the writing.
    """
    if data == "narrow":
        return make_narrow_orders, {"rows": rows, "days": days}
    reference = {"days": day_keys(days), "rows_per_day": rows // days, "customers": 20_000}
    return make_orders, {**reference, "seed": 7}


SCHEMAS = {"narrow": NARROW_SCHEMA, "reference": ORDERS_SCHEMA}


def orders_dataset(data: str, rows: int, days: int, blocks: int) -> Any:
    """The lazy Ray pipeline of A and B (built fresh per run, so nothing is cached)."""
    import ray.cloudpickle
    import ray.data

    module = sys.modules[make_narrow_orders.__module__]
    if module.__name__ != "__main__":
        # Imported (e.g. from a test) rather than run: Ray workers cannot import this script by
        # name, so ship its functions by value, as they are when it runs as `__main__`.
        ray.cloudpickle.register_pickle_by_value(module)
    function, kwargs = generator(data, rows, days)
    return ray.data.range(rows, override_num_blocks=blocks).map_batches(
        function, batch_format="numpy", fn_kwargs=kwargs
    )


def orders_stream(data: str, rows: int, days: int, blocks: int) -> pa.RecordBatchReader:
    """The same rows as `orders_dataset`, generated lazily in this process, in as many chunks."""
    function, kwargs = generator(data, rows, days)

    def batches() -> Iterator[pa.RecordBatch]:
        bounds = np.linspace(0, rows, blocks + 1, dtype=np.int64)
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            if end > start:
                ids = {"id": np.arange(start, end, dtype=np.int64)}
                yield from function(ids, **kwargs).to_batches()

    return pa.RecordBatchReader.from_batches(SCHEMAS[data], batches())


# ---------------------------------------------------------------------------- the writers
def write_a(data: str, path: str, rows: int, days: int, blocks: int) -> None:
    import dagster as dg

    import ray_assets

    keys = day_keys(days)
    partition_slice = ray_assets.PartitionSlice.from_key_range(
        dg.DailyPartitionsDefinition(start_date=keys[0]),
        dg.PartitionKeyRange(keys[0], keys[-1]),
        PARTITION_COLUMN,
        asset_key="bench",
    )
    result = ray_assets.DeltaStore(path).write(
        orders_dataset(data, rows, days, blocks), partition_slice, write_id=uuid.uuid4().hex
    )
    if not result.committed or result.rows_written != rows:
        raise VerificationError(
            f"A: DeltaStore.write reported committed={result.committed}, "
            f"rows_written={result.rows_written}, expected {rows}"
        )


def write_b(data: str, path: str, rows: int, days: int, blocks: int) -> None:
    orders_dataset(data, rows, days, blocks).write_delta(path, partition_by=[PARTITION_COLUMN])


def write_c(data: str, path: str, rows: int, days: int, blocks: int) -> None:
    from deltalake import write_deltalake

    write_deltalake(
        path,
        orders_stream(data, rows, days, blocks),
        partition_by=[PARTITION_COLUMN],
        mode="overwrite",
    )


def row_count_sink() -> Any:
    """A Ray `Datasink` whose tasks discard the blocks they receive and return their row count;
    after the write, its `rows` holds the total (made here, so Ray is imported only when run)."""
    from ray.data.block import BlockAccessor
    from ray.data.datasource.datasink import Datasink, WriteResult

    class RowCountSink(Datasink[int]):
        rows = 0

        def get_name(self) -> str:
            return "RowCount"

        def write(self, blocks: Iterable[Any], ctx: Any) -> int:
            return sum(BlockAccessor.for_block(block).num_rows() for block in blocks)

        def on_write_complete(self, write_result: WriteResult[int]) -> None:
            self.rows = sum(write_result.write_returns)

    return RowCountSink()


def run_p(data: str, path: str, rows: int, days: int, blocks: int) -> None:
    """Execute the dataset A and B write, the same way, but discard its blocks (`path` unused)."""
    sink = row_count_sink()
    orders_dataset(data, rows, days, blocks).write_datasink(sink)
    if sink.rows != rows:
        raise VerificationError(f"P: the sink received {sink.rows} rows, expected {rows}")


WRITERS: dict[str, Callable[[str, str, int, int, int], None]] = {
    "A": write_a,
    "B": write_b,
    "C": write_c,
    "P": run_p,
}


def verify(path: str, rows: int, days: int, method: str) -> int:
    """Check rows and partitions from the Delta log alone (no data scan); return the file count."""
    from deltalake import DeltaTable

    actions = pa.table(DeltaTable(path).get_add_actions(flatten=True))
    counted = int(pc.sum(actions.column("num_records")).as_py() or 0) if actions.num_rows else 0
    if counted != rows:
        raise VerificationError(f"{method}: the Delta log holds {counted} rows, expected {rows}")
    column = f"partition.{PARTITION_COLUMN}"
    if column not in actions.column_names:
        raise VerificationError(f"{method}: the table is not partitioned by {PARTITION_COLUMN}")
    values = {str(v) for v in actions.column(column).to_pylist()}
    if values != set(day_keys(days)):
        raise VerificationError(
            f"{method}: {len(values)} distinct partition values, expected the {days} days "
            f"{day_keys(days)[0]}..{day_keys(days)[-1]}; got {sorted(values)[:5]}..."
        )
    return actions.num_rows


# ---------------------------------------------------------------------------- the numbers
T = TypeVar("T")
Timings = Mapping[str, float]
"""Seconds per method: the medians, or the runs of one round (each method once)."""


def write_costs(t: Timings) -> dict[str, float]:
    """What A's and B's writes cost above executing the pipeline alone: their seconds minus P's."""
    return {method: t[method] - t["P"] for method in ("A", "B")}


def cost_ratio(t: Timings) -> float:
    """cost(A) / cost(B); NaN (undefined) when B costs nothing measurable above P."""
    costs = write_costs(t)
    return costs["A"] / costs["B"] if costs["B"] > 0 else math.nan


RATIOS: dict[str, Callable[[Timings], float]] = {
    "write_vs_ray_write_delta": lambda t: t["B"] / t["A"],
    "write_vs_pyarrow_stream": lambda t: t["A"] / t["C"],
    "write_cost_vs_write_delta": cost_ratio,
}
"""Each result's ratio, of the medians (its value) or of one round's runs (its spread)."""


def medians_of(seconds: Mapping[str, Sequence[float]]) -> dict[str, float]:
    return {method: median(runs) for method, runs in seconds.items()}


def rounds(seconds: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """The runs of each repeat round, which ran every method once (so they pair up by index)."""
    return [dict(zip(seconds, runs, strict=True)) for runs in zip(*seconds.values(), strict=True)]


def per_round(f: Callable[[Timings], T], seconds: Mapping[str, Sequence[float]]) -> list[T]:
    """`f` (a ratio, or the write costs) of each round's runs."""
    return [f(one_round) for one_round in rounds(seconds)]


def listed(xs: Sequence[float]) -> list[float | None]:
    """Values for the JSON file: rounded to 3 decimals, `null` where undefined."""
    return [finite_or_none(x) for x in xs]


def summarize(
    data: str, seconds: dict[str, list[float]], files: dict[str, list[int]], rows: int
) -> dict[str, Any]:
    """The details of one dataset: every method's runs, medians and spreads, the write costs
    and the ratios, each ratio of the medians with the spread of its per-round values."""
    medians = medians_of(seconds)
    costs = write_costs(medians)
    cost_rounds = {m: [c[m] for c in per_round(write_costs, seconds)] for m in costs}
    ratio_rounds = {name: per_round(f, seconds) for name, f in RATIOS.items()}
    return {
        "columns": SCHEMAS[data].names,
        "seconds": seconds,
        "median_seconds": medians,
        "rows_per_second_median": {m: rows / s for m, s in medians.items()},
        "files_written": files,
        "write_cost_seconds": {m: finite_or_none(c) for m, c in costs.items()},
        **{name: finite_or_none(f(medians)) for name, f in RATIOS.items()},
        "per_round": {
            "write_cost_seconds": {m: listed(c) for m, c in cost_rounds.items()},
            **{name: listed(values) for name, values in ratio_rounds.items()},
        },
        "spread": {
            "seconds": {m: listed(spread(runs)) for m, runs in seconds.items()},
            "write_cost_seconds": {m: listed(spread(c)) for m, c in cost_rounds.items()},
            **{name: listed(spread(values)) for name, values in ratio_rounds.items()},
        },
    }


def print_summary(data: str, seconds: Mapping[str, Sequence[float]]) -> None:
    """Medians, write costs and ratios of one dataset, each as `median (min–max)`."""
    medians = medians_of(seconds)
    print(
        f"{data} medians: "
        + ", ".join(f"{m} {shown(medians[m], spread(runs), 's')}" for m, runs in seconds.items())
    )
    costs = write_costs(medians)
    cost_rounds = per_round(write_costs, seconds)
    print(
        f"{data} write cost (minus P): "
        + ", ".join(
            f"{m} {shown(c, spread([r[m] for r in cost_rounds]), 's')}" for m, c in costs.items()
        )
    )
    print(
        f"{data} ratios: "
        + ", ".join(
            f"{name} {shown(f(medians), spread(per_round(f, seconds)), 'x')}"
            for name, f in RATIOS.items()
        ),
        flush=True,
    )


RESULTS: dict[str, tuple[str, str, str]] = {
    "write_vs_ray_write_delta": (
        "higher",
        ">= 1.5",
        "Ray's Dataset.write_delta(path, partition_by=['order_date']) of the same dataset; value "
        "= median(write_delta seconds) / median(DeltaStore.write seconds) on the narrow dataset "
        "(details.datasets.reference: the reference pipeline's orders)",
    ),
    "write_vs_pyarrow_stream": (
        "lower",
        "<= 1.5",
        "one pyarrow RecordBatchReader of the same rows, generated in the driver, into "
        "deltalake.write_deltalake(mode='overwrite'); value = median(DeltaStore.write seconds) "
        "/ median(write_deltalake seconds) on the narrow dataset (details.datasets.reference: "
        "the reference pipeline's orders)",
    ),
    "write_cost_vs_write_delta": (
        "lower",
        "<= 0.5",
        "the write's own cost, above executing the same lazy dataset alone (P: the same Ray "
        "pipeline and streaming execution into a sink that only counts the rows and discards "
        "the blocks: no Parquet, no files, no commit), DeltaStore.write vs Ray's "
        "Dataset.write_delta; value = (median(DeltaStore.write s) - median(P s)) / "
        "(median(write_delta s) - median(P s)) on the narrow dataset "
        "(details.datasets.reference: the reference pipeline's orders)",
    ),
}
"""Each result's (better, goal, baseline); its value is `RATIOS[name]` on the narrow medians."""


# ---------------------------------------------------------------------------- the run
def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=16_000_000, help="rows per write")
    parser.add_argument("--days", type=int, default=16, help="daily partitions the rows span")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method")
    parser.add_argument("--blocks", type=int, default=64, help="Ray blocks (and stream chunks)")
    parser.add_argument("--out", default=None, help="folder for the tables (default: a temp dir)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up")
    args = parser.parse_args(argv)
    if args.days < 1 or args.rows < args.days or args.repeats < 1 or args.blocks < 1:
        parser.error("need days >= 1, rows >= days, repeats >= 1 and blocks >= 1")
    if args.rows % args.days:
        parser.error("rows must be a multiple of days (the same number of orders each day)")
    return args, parser


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: Path) -> None:
    import ray
    from ray.data import DataContext

    import ray_assets

    ray_assets.RayResource().ensure_started()
    DataContext.get_current().enable_progress_bars = False
    # Ray Data logs several INFO lines per execution; keep the per-run lines readable.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    keep_tables = args.out is not None

    def one_run(data: str, method: str, label: str, rows: int) -> tuple[float, int | None]:
        """Time one run and verify it; return its seconds and the files it wrote (P: None)."""
        path = str(out / f"{label}-{data}-{method}")
        seconds, _ = timed(lambda: WRITERS[method](data, path, rows, args.days, args.blocks))
        files = verify(path, rows, args.days, method) if method in TABLE_METHODS else None
        if not keep_tables:
            shutil.rmtree(path, ignore_errors=True)
        return seconds, files

    warmup: dict[str, float] = {}
    if not args.no_warmup:
        warm_rows = args.days * max(1, min(args.rows, 200_000) // args.days)
        for method in METHODS:
            warmup[method], _ = one_run(DATASETS[0], method, "warmup", warm_rows)
        print(
            f"warm-up ({warm_rows:,} rows, untimed): "
            + ", ".join(f"{m} {s:.2f}s" for m, s in warmup.items()),
            flush=True,
        )

    measured: dict[str, dict[str, Any]] = {}
    seconds_of: dict[str, dict[str, list[float]]] = {}
    for data in DATASETS:
        seconds: dict[str, list[float]] = {m: [] for m in METHODS}
        files: dict[str, list[int]] = {m: [] for m in TABLE_METHODS}
        for repeat in range(args.repeats):
            for method in METHODS:
                took, written = one_run(data, method, f"run{repeat}", args.rows)
                seconds[method].append(took)
                if written is not None:
                    files[method].append(written)
                print(
                    f"[{data} {repeat + 1}/{args.repeats}] {method} {METHOD_NAMES[method]:<34} "
                    f"{took:8.2f} s  {args.rows / took:12,.0f} rows/s  "
                    + (f"{written} files" if written is not None else "no files"),
                    flush=True,
                )
        print_summary(data, seconds)
        measured[data] = summarize(data, seconds, files, args.rows)
        seconds_of[data] = seconds

    details = {
        "rows": args.rows,
        "days": args.days,
        "repeats": args.repeats,
        "blocks": args.blocks,
        "methods": METHOD_NAMES,
        "value_from": "narrow",
        "spread_of_ratios": "min-max of the ratio taken within each repeat round (each round "
        "runs every method once); the value is the ratio of the medians",
        "datasets": measured,
        "warmup_seconds": warmup,
        "ray_cluster_cpus": ray.cluster_resources().get("CPU"),
    }
    command = reproduce_command("bench/write_path.py", args, parser)
    narrow = seconds_of["narrow"]
    for name, (better, goal, baseline) in RESULTS.items():
        write_result(
            name,
            RATIOS[name](medians_of(narrow)),
            unit="x",
            better=better,
            goal=goal,
            baseline=baseline,
            command=command,
            details=details,
            spread=spread(per_round(RATIOS[name], narrow)),
        )


def main(argv: list[str] | None = None) -> int:
    args, parser = parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-write-path-"))
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"write path: {args.rows:,} rows over {args.days} days, {args.repeats} repeat(s), "
        f"{args.blocks} blocks, tables under {out}",
        flush=True,
    )
    try:
        return exit_code_of(lambda: run(args, parser, out))
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    exit_now(main())
