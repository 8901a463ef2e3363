"""Constant memory: the ETL job of `bench/etl.py` at 1x, 2x, 4x and 8x data, object store 256 MiB.

The seed's first promise is that a pipeline over data larger than memory runs in constant
memory. This runs the ray_assets engine of the ETL benchmark (one Dagster run of a daily
`ray_asset`: `bench/etl_ray_assets.py`) over the 60M-row input and over 2, 4 and 8 copies of it,
each in a fresh process whose embedded Ray has an object store of `--object-store-mib` (256 MiB:
the 8x input is 25 times that on disk, and several times more once decoded), and measures the
job's seconds and the driver process's peak resident memory (`ru_maxrss`).

A copy is a folder of symbolic links to the 64 files of the input, under other names: the job
reads every file as many times as there are copies, the answer is the generator's totals times
the copies, and nothing but the size changes (the files stay in the page cache at every size,
so the growth measured is the pipeline's, not the disk's). Every run's table is checked against
those totals before its figures count. Scales run in an order rotated each round.

Results (`bench/results/<name>.json`):
  rss_8x_over_1x          median peak driver RSS at 8x / at 1x, goal <= 1.15
  data_over_object_store  the largest input that completed, in Parquet bytes on disk / the
                          object store's bytes, goal >= 10
`details` holds every run's seconds and peak RSS, and the cost growth table (also printed, and
drawn into `bench/results/constant_memory.png` when matplotlib is installed: `pip install
-e '.[dev,bench]'`).

Run: `.venv/bin/python bench/constant_memory.py [--rounds R] [--scales 1,2,4,8]`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run as a script, not a package

from _results import (  # noqa: E402
    RESULTS_DIR,
    exit_code_of,
    exit_now,
    median,
    reproduce_command,
    spread,
    write_result,
)
from etl import run_engine  # noqa: E402
from etl_check import check_against, read_daily_table  # noqa: E402
from etl_data import DATA_ROOT, InputData, ensure_input  # noqa: E402

REPO = HERE.parent
MIB = 1024**2


def copies_of(data: InputData, copies: int) -> Path:
    """A folder holding `copies` links to every input file (the input itself for 1)."""
    if copies == 1:
        return data.folder
    folder = DATA_ROOT / f"etl-{data.rows}-x{copies}"
    if len(list(folder.glob("*.parquet"))) != copies * len(data.files):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for copy in range(copies):
            for file in data.files:
                (folder / f"copy{copy}-{file.name}").symlink_to(file)
    return folder


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, root: Path) -> None:
    data = ensure_input(args.rows)
    scales = [int(s) for s in args.scales.split(",")]
    store_bytes = args.object_store_mib * MIB
    store_env = {"ETL_OBJECT_STORE_BYTES": str(store_bytes)}
    input_bytes = sum(file.stat().st_size for file in data.files)
    folders = {scale: copies_of(data, scale) for scale in scales}
    runs: dict[int, list[dict[str, Any]]] = {scale: [] for scale in scales}
    print(
        f"constant memory: {data.rows:,} rows x {scales}, object store {args.object_store_mib} "
        f"MiB, {args.rounds} round(s)",
        flush=True,
    )
    for round_number in range(1, args.rounds + 1):
        order = scales[round_number % len(scales) :] + scales[: round_number % len(scales)]
        for scale in order:
            out = root / f"round{round_number}-x{scale}"
            out.mkdir()
            measured = run_engine("ray_assets", folders[scale], out, args.timeout, store_env)
            expected = {day: (s * scale, c * scale) for day, (s, c) in data.expected.items()}
            table = read_daily_table(out / "ray_assets")
            check_against(f"x{scale}", table, expected, "the generator's totals")
            shutil.rmtree(out)
            runs[scale].append(asdict(measured))
            print(
                f"[round{round_number}] x{scale}  job {measured.job_s:7.2f} s   peak RSS "
                f"{measured.peak_rss_bytes / MIB:7.0f} MiB   (table checked)",
                flush=True,
            )
    growth = [
        {
            "scale": scale,
            "rows": data.rows * scale,
            "input_bytes": input_bytes * scale,
            "job_s": median([r["job_s"] for r in runs[scale]]),
            "job_s_spread": spread([r["job_s"] for r in runs[scale]]),
            "peak_rss_mib": median([r["peak_rss_bytes"] / MIB for r in runs[scale]]),
            "peak_rss_mib_spread": spread([r["peak_rss_bytes"] / MIB for r in runs[scale]]),
        }
        for scale in scales
    ]
    print("scale  rows            job seconds (min-max)        peak driver RSS MiB (min-max)")
    for row in growth:
        low, high = row["job_s_spread"]
        rss_low, rss_high = row["peak_rss_mib_spread"]
        print(
            f"x{row['scale']:<5} {row['rows']:>13,}   {row['job_s']:7.2f} ({low:.2f}-{high:.2f})"
            f"        {row['peak_rss_mib']:6.0f} ({rss_low:.0f}-{rss_high:.0f})"
        )
    command = reproduce_command("bench/constant_memory.py", args, parser)
    details = {"object_store_bytes": store_bytes, "growth": growth, "runs": runs}
    smallest, largest = min(scales), max(scales)
    per_round = [
        big["peak_rss_bytes"] / small["peak_rss_bytes"]
        for big, small in zip(runs[largest], runs[smallest], strict=True)
    ]
    write_result(
        f"rss_{largest}x_over_{smallest}x",
        median([r["peak_rss_bytes"] for r in runs[largest]])
        / median([r["peak_rss_bytes"] for r in runs[smallest]]),
        unit="x",
        better="lower",
        goal="<= 1.15",
        baseline=f"peak driver RSS of the same job on {smallest}x the data",
        command=command,
        details=details,
        spread=spread(per_round),
    )
    write_result(
        "data_over_object_store",
        input_bytes * largest / store_bytes,
        unit="x",
        better="higher",
        goal=">= 10",
        baseline="the object store's bytes (Parquet bytes on disk of the largest input that "
        "completed and checked equal)",
        command=command,
        details={"object_store_bytes": store_bytes, "input_bytes": input_bytes * largest},
    )
    plot(growth, RESULTS_DIR / "constant_memory.png")


def plot(growth: list[dict[str, Any]], path: Path) -> None:
    """Seconds and peak RSS against the data's size, as a PNG (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", flush=True)
        return
    scales = [row["scale"] for row in growth]
    figure, seconds_axis = plt.subplots(figsize=(6, 3.5))
    seconds_axis.plot(scales, [row["job_s"] for row in growth], "o-", color="tab:blue")
    seconds_axis.set_xlabel("data (x 60M rows, 800 MB)")
    seconds_axis.set_ylabel("job seconds", color="tab:blue")
    seconds_axis.set_xticks(scales)
    rss_axis = seconds_axis.twinx()
    rss_axis.plot(scales, [row["peak_rss_mib"] for row in growth], "s--", color="tab:red")
    rss_axis.set_ylabel("peak driver RSS (MiB)", color="tab:red")
    rss_axis.set_ylim(bottom=0)
    seconds_axis.set_ylim(bottom=0)
    figure.suptitle("ETL job on ray_assets, object store 256 MiB (medians)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"plot -> {path.relative_to(REPO)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=60_000_000, help="rows of the 1x input")
    parser.add_argument("--scales", default="1,2,4,8", help="copies of the input to run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (each scale once)")
    parser.add_argument("--object-store-mib", type=int, default=256, help="object store size")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one run may take")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-constant-memory-"))
    try:
        return exit_code_of(lambda: run(args, parser, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    exit_now(main())
