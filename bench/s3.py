"""Object-store benchmark: Delta tables on a real S3-compatible server on loopback.

The server is moto's (in its own process, as in the tests): it keeps objects in memory and
speaks the S3 REST API over HTTP, so absolute speeds are those of a small Python server, but
both sides of each ratio pay them alike.

  s3_write_vs_ray_write_parquet  N rows over D daily partitions (three numeric columns and the
      day, generated from the row index), written to S3 by `DeltaStore.write` (task-written
      files, one partition-exact commit) / by Ray's `Dataset.write_parquet(partition_cols=...)`
      to the same server with the same pyarrow filesystem (no table format, no commit): what
      atomicity costs. Goal <= 1.3x.
  s3_read_pruned_vs_full  the same table: reading it whole / reading one of its partitions
      (`DeltaStore.read` of a one-day slice: the driver lists that day's files from the log,
      and nothing else is fetched). Goal >= 10x.

One process, one Ray (started once, untimed), an untimed warm-up of each method, then R rounds
alternating the methods; medians, with the spread (min-max) of the per-round ratios. Every
write is verified from the Delta log (rows per day) or by listing the Parquet files' footers;
every read by its row count.

Run: `.venv/bin/python bench/s3.py [--rows N] [--days D] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script, not a package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.s3_server

from _results import (  # noqa: E402
    VerificationError,
    exit_code_of,
    median,
    reproduce_command,
    spread,
    timed,
    write_result,
)


def dataset(rows: int, days: list[str]):
    import numpy as np
    import ray.data

    day_array = np.array(days, dtype=object)
    per_day = rows // len(days)

    def make(batch: dict) -> dict:
        ids = batch["id"]
        return {
            "order_id": ids,
            "order_date": day_array[ids // per_day],
            "amount": (ids % 1000) * 0.25,
            "quantity": (ids % 7).astype("int32"),
        }

    blocks = max(len(days), rows // 250_000)
    return ray.data.range(per_day * len(days), override_num_blocks=blocks).map_batches(make)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return exit_code_of(lambda: run(args, parser))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import dagster as dg
    from ray.data import DataContext

    from ray_assets import DeltaStore, PartitionSlice, RayResource
    from ray_assets.storage.filesystem import resolve_filesystem
    from tests.s3_server import running_server

    RayResource().ensure_started()
    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")
    days = daily.get_partition_keys()[: args.days]
    rows = (args.rows // args.days) * args.days
    with running_server() as s3:
        options = s3.storage_options

        def write_delta(name: str, n: int) -> None:
            store = DeltaStore(s3.uri(name), storage_options=options)
            result = store.write(
                dataset(n, days),
                PartitionSlice.from_keys(daily, days, "order_date", asset_key="orders"),
            )
            if result.rows_written != n:
                raise VerificationError(f"{name}: {result.rows_written} rows, expected {n}")

        def write_parquet(name: str, n: int) -> None:
            import pyarrow.fs as pafs
            import pyarrow.parquet as pq

            filesystem, root = resolve_filesystem(s3.uri(name), options)
            dataset(n, days).write_parquet(
                root, filesystem=filesystem, partition_cols=["order_date"]
            )
            written = sum(
                pq.read_metadata(info.path, filesystem=filesystem).num_rows
                for info in filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
                if info.path.endswith(".parquet")
            )
            if written != n:
                raise VerificationError(f"{name}: {written} rows in the files, expected {n}")

        warm = (100_000 // len(days)) * len(days)
        write_delta("warmup-delta", warm)
        write_parquet("warmup-parquet", warm)
        writes: dict[str, list[float]] = {"delta": [], "parquet": []}
        for repeat in range(args.repeats):
            order = ("delta", "parquet") if repeat % 2 == 0 else ("parquet", "delta")
            for method in order:
                runner = write_delta if method == "delta" else write_parquet
                name = f"{method}-{repeat}"
                seconds, _ = timed(lambda runner=runner, name=name: runner(name, rows))
                writes[method].append(seconds)
                print(
                    f"[{repeat + 1}/{args.repeats}] write {method:<8} {seconds:6.2f} s", flush=True
                )

        store = DeltaStore(s3.uri("delta-0"), storage_options=options)
        whole = PartitionSlice.from_keys(daily, days, "order_date", asset_key="orders")
        one = PartitionSlice.from_keys(
            daily, [days[len(days) // 2]], "order_date", asset_key="orders"
        )
        reads: dict[str, list[float]] = {"full": [], "pruned": []}
        for repeat in range(args.repeats + 1):
            for method, part in (("full", whole), ("pruned", one)):
                seconds, count = timed(lambda part=part: store.read(part).materialize().count())
                expected = rows if method == "full" else rows // args.days
                if count != expected:
                    raise VerificationError(f"read {method}: {count} rows, expected {expected}")
                if repeat:  # the first round warms the read path
                    reads[method].append(seconds)
                    print(
                        f"[{repeat}/{args.repeats}] read {method:<7} {seconds:6.2f} s", flush=True
                    )

    command = reproduce_command("bench/s3.py", args, parser)
    write_ratios = [d / p for d, p in zip(writes["delta"], writes["parquet"], strict=True)]
    write_result(
        "s3_write_vs_ray_write_parquet",
        median(writes["delta"]) / median(writes["parquet"]),
        unit="x",
        better="lower",
        goal="<= 1.3",
        baseline=f"{rows:,} rows over {args.days} days to a local S3-compatible server (moto): "
        "Ray's Dataset.write_parquet(partition_cols=['order_date']) with the same pyarrow S3 "
        "filesystem; value = median(DeltaStore.write seconds) / median(write_parquet seconds)",
        command=command,
        spread=spread(write_ratios),
        details={
            "seconds": {m: [round(s, 2) for s in v] for m, v in writes.items()},
            "rows": rows,
            "days": args.days,
        },
    )
    read_ratios = [f / p for f, p in zip(reads["full"], reads["pruned"], strict=True)]
    write_result(
        "s3_read_pruned_vs_full",
        median(reads["full"]) / median(reads["pruned"]),
        unit="x",
        better="higher",
        goal=">= 10",
        baseline=f"the same table on the same server: DeltaStore.read of all {args.days} "
        "partitions (materialized); value = median(full read seconds) / median(seconds to "
        "read one partition)",
        command=command,
        spread=spread(read_ratios),
        details={"seconds": {m: [round(s, 3) for s in v] for m, v in reads.items()}},
    )


if __name__ == "__main__":
    sys.exit(main())
