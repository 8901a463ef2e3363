"""SQL benchmark: reading and writing 1M rows of 8 columns in PostgreSQL on loopback.

  sql_read_vs_ray_read_sql    `SqlDatabase.read(table, shard_column="id")` (one bounded query
                              per shard, Arrow through ADBC) against `ray.data.read_sql` with
                              its defaults and psycopg (one task, `fetchall()` into Python
                              tuples), both materialized; goal >= 2x.
  sql_write_vs_ray_write_sql  `SqlDatabase.write` (one transaction, COPY through ADBC) against
                              `Dataset.write_sql` with psycopg (`executemany` of INSERTs, one
                              transaction per task); goal >= 10x.

A throwaway PostgreSQL server is started as the tests start it (`tests/postgres_server.py`;
`RAY_ASSETS_TEST_POSTGRES_URL` points at your own). One Ray (2 CPUs) serves every repeat; an
untimed warm-up runs each read once so that Ray's workers and both drivers are loaded. Then
`--repeats` rounds run each form once, in alternating order; every read is checked to hold
every id once, every write to leave exactly the rows written. The value is the ratio of the
medians (baseline seconds / ours), with the min-max of the per-round ratios.

Run: `.venv/bin/python bench/sql.py [--rows N] [--repeats R]`
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _results import (  # noqa: E402
    VerificationError,
    exit_code_of,
    exit_now,
    median,
    reproduce_command,
    spread,
    write_result,
)


def orders(rows: int):
    """The 8-column table of the benchmark (ids 0..rows-1)."""
    import numpy as np
    import pyarrow as pa

    ids = np.arange(rows, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "day": pa.array([f"2024-01-{d:02d}" for d in range(1, 31)]).take(pa.array(ids % 30)),
            "customer_id": ids % 9_973,
            "amount": ids * 0.25,
            "quantity": (ids % 7).astype(np.int32),
            "currency": pa.array(["EUR", "USD", "GBP"]).take(pa.array(ids % 3)),
            "paid": ids % 5 != 0,
            "note": pa.array([f"order {i % 1000}" for i in range(rows)]),
        }
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import psycopg
    import ray
    import ray.data
    from postgres_server import running_server

    from ray_assets import RayResource
    from ray_assets.connectors.sql import SqlDatabase

    RayResource(num_cpus=2, object_store_memory_bytes=1024**3).ensure_started()
    ray.data.DataContext.get_current().enable_progress_bars = False
    data = orders(args.rows)
    with running_server() as server:
        database = SqlDatabase(url=server.url)
        database.write(data, "source")
        libpq_url = server.url

        def connect():
            return psycopg.connect(libpq_url)

        columns = ", ".join(data.schema.names)
        with psycopg.connect(libpq_url, autocommit=True) as connection:
            connection.execute("CREATE TABLE ray_target (LIKE source)")

        def ours_read() -> int:
            dataset = database.read("source", shard_column="id").materialize()
            return _check_ids(dataset, args.rows)

        def ray_read() -> int:
            dataset = ray.data.read_sql(f"SELECT {columns} FROM source", connect).materialize()
            return _check_ids(dataset, args.rows)

        source = ray.data.from_arrow(data).materialize()

        def ours_write() -> int:
            written = database.write(source, "ours_target")
            return _check_count(database, "ours_target", written, args.rows)

        def ray_write() -> int:
            with psycopg.connect(libpq_url, autocommit=True) as connection:
                connection.execute("DELETE FROM ray_target")  # the same replace, done by hand
            placeholders = ", ".join(["%s"] * len(data.schema.names))
            source.write_sql(f"INSERT INTO ray_target VALUES ({placeholders})", connect)
            return _check_count(database, "ray_target", args.rows, args.rows)

        pairs = {
            "read": {"ours": ours_read, "ray": ray_read},
            "write": {"ours": ours_write, "ray": ray_write},
        }
        seconds = {kind: {form: [] for form in forms} for kind, forms in pairs.items()}
        for form in pairs["read"].values():
            form()  # warm-up, untimed: Ray's workers, ADBC's and psycopg's drivers loaded
        for kind, forms in pairs.items():
            for repeat in range(args.repeats):
                order = ["ours", "ray"] if repeat % 2 == 0 else ["ray", "ours"]
                for form in order:
                    seconds[kind][form].append(_timed(forms[form]))
                print(
                    f"[{kind} {repeat + 1}] ours {seconds[kind]['ours'][-1]:.2f} s, "
                    f"ray {seconds[kind]['ray'][-1]:.2f} s",
                    flush=True,
                )
    command = reproduce_command("bench/sql.py", args, parser)
    results = {
        "read": (
            "sql_read_vs_ray_read_sql",
            ">= 2",
            "ray.data.read_sql(query, psycopg.connect) with its defaults, materialized",
        ),
        "write": (
            "sql_write_vs_ray_write_sql",
            ">= 10",
            "Dataset.write_sql(INSERT ..., psycopg.connect) after a DELETE of the target",
        ),
    }
    for kind, (name, goal, baseline) in results.items():
        ours, theirs = seconds[kind]["ours"], seconds[kind]["ray"]
        write_result(
            name,
            median(theirs) / median(ours),
            unit="x",
            better="higher",
            goal=goal,
            baseline=baseline,
            command=command,
            details={
                "rows": args.rows,
                "columns": 8,
                "seconds_ours": ours,
                "seconds_baseline": theirs,
                "median_ours_s": median(ours),
                "median_baseline_s": median(theirs),
                "server": "PostgreSQL on loopback, started by tests/postgres_server.py",
            },
            spread=spread([t / o for t, o in zip(theirs, ours, strict=True)]),
        )


def _timed(fn: Callable[[], int]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def _check_ids(dataset, rows: int) -> int:
    import pyarrow.compute as pc

    ids = dataset.to_arrow_refs()
    import pyarrow as pa
    import ray

    table = pa.concat_tables(ray.get(ids))
    if table.num_rows != rows or len(pc.unique(table["id"])) != rows:
        raise VerificationError(f"read {table.num_rows} rows, expected {rows} distinct ids")
    return rows


def _check_count(database, table: str, written: int, rows: int) -> int:
    count = database.fetch(f"SELECT COUNT(DISTINCT id) AS n, COUNT(*) AS m FROM {table}")
    distinct, total = count["n"][0].as_py(), count["m"][0].as_py()
    if not written == distinct == total == rows:
        raise VerificationError(f"{table}: {total} rows ({distinct} ids) after writing {written}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the table")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats")
    args = parser.parse_args(argv)
    return exit_code_of(lambda: run(args, parser))


if __name__ == "__main__":
    exit_now(main())
