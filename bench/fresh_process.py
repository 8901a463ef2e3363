"""Fresh-process benchmark: one small partition through `dagster asset materialize`, as every CLI,
`dagster dev` and daemon run does, with Ray embedded in the run vs the warm shared local head.

Each run is a new `dagster asset materialize` process (one `raw_orders` day of 10,000 rows by
default, into a fresh table) timed from process start to exit. Runs alternate embedded, shared,
embedded, shared, ... after one untimed run of each (which also starts the shared head, so the
timed shared runs find it warm). `fresh_process_run_vs_embedded` = median(embedded seconds) /
median(shared seconds), goal >= 2; `details.connect_s` holds the seconds the shared runs took to
find the head and connect, from their log (goal <= 0.5). The head runs in a temporary folder
with its own token and is stopped at the end.

Run: `.venv/bin/python bench/fresh_process.py [--rows N] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _head import stop_head  # noqa: E402
from _results import median, reproduce_command, spread, write_result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DAY = "2024-01-01"
CONNECT = re.compile(
    r"Shared local Ray head at .*: (?:found|started) in ([\d.]+)s, connected in ([\d.]+)s"
)


def one_run(
    variant: str, environment: dict[str, str], table_root: Path
) -> tuple[float, float | None]:
    """Seconds of one fresh `dagster asset materialize` process, and its find+connect seconds."""
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-f"]
    command += ["bench/fresh_process_defs.py", "--select", "raw_orders", "--partition", DAY]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=REPO,
        env={**environment, "BENCH_RAY": variant, "RAY_ASSETS_TABLE_ROOT": str(table_root)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{variant} run failed:\n{done.stderr[-3000:]}")
    found = CONNECT.search(done.stdout + done.stderr)
    return seconds, (float(found.group(1)) + float(found.group(2))) if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the day")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each variant")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-fresh-"))
    environment = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "RAY_USAGE_STATS_ENABLED": "0",
        "DAGSTER_HOME": str(scratch / "home"),
        "RAY_ASSETS_HEAD_DIR": str(scratch / "head"),
        "RAY_AUTH_TOKEN_PATH": str(scratch / "token"),
        "RAY_ASSETS_ROWS_PER_DAY": str(args.rows),
    }
    (scratch / "home").mkdir()
    token = scratch / "token"  # embedded and shared runs both read Ray's token from here
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    seconds: dict[str, list[float]] = {"embedded": [], "shared": []}
    connect: list[float] = []
    try:
        for round_index in range(args.repeats + 1):
            for variant in ("embedded", "shared"):
                took, connected = one_run(
                    variant, environment, scratch / f"t-{variant}-{round_index}"
                )
                print(f"[{round_index}/{args.repeats}] {variant:8s} {took:6.2f} s", flush=True)
                if round_index:  # round 0 warms up (and starts the head)
                    seconds[variant].append(took)
                    if connected is not None:
                        connect.append(connected)
    finally:
        stop_head(scratch / "head", environment)
    rounds = [e / s for e, s in zip(seconds["embedded"], seconds["shared"], strict=True)]
    value = median(seconds["embedded"]) / median(seconds["shared"])
    write_result(
        "fresh_process_run_vs_embedded",
        value,
        unit="x",
        better="higher",
        goal=">= 2",
        baseline=(
            f"one raw_orders day ({args.rows:,} rows) by `dagster asset materialize` in a fresh "
            "process with Ray embedded in it; value = median(embedded s) / median(shared head s)"
        ),
        command=reproduce_command("bench/fresh_process.py", args, parser),
        details={
            "repeats": args.repeats,
            "seconds": seconds,
            "median_s": {k: round(median(v), 3) for k, v in seconds.items()},
            "spread_s": {k: spread(v) for k, v in seconds.items()},
            "per_round_ratio": [round(r, 3) for r in rounds],
            "connect_s": {
                "goal": "<= 0.5",
                "median": round(median(connect), 3) if connect else None,
                "spread": spread(connect) if connect else None,
                "runs": connect,
            },
        },
        spread=spread(rounds),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
