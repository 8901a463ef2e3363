"""Should ray_assets offer a per-block SQL transform? DuckDB over each Arrow batch vs pyarrow.

The ETL job's enrichment (keep the valid rows, `amount_usd = amount * rate[currency]`) written
three ways and applied to the same batches, one batch at a time on one thread, as a Ray task
applies a batch function: pyarrow compute (`pc.index_in` + `take`, what the README's fast form
uses), and DuckDB SQL over the registered batch (zero-copy Arrow scan) with a join to the rate
table or with a `CASE`. A SQL transform would be worth offering only if it were faster than the
expressions (ratio < 1). Every way must return the same rows before any time counts.

Result: `sql_transform_vs_arrow` = the faster DuckDB form's seconds / pyarrow's (medians of
`--repeats` alternating repeats, spread of the per-repeat ratio).

Run: `.venv/bin/python bench/sql_transform.py [--files 8] [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script, not a package

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from _results import (  # noqa: E402
    VerificationError,
    exit_code_of,
    exit_now,
    median,
    reproduce_command,
    spread,
    write_result,
)
from etl_data import JOB_COLUMNS, RATES, ensure_input  # noqa: E402

CURRENCIES = pa.array(list(RATES))
RATE_VALUES = pa.array(list(RATES.values()), pa.float64())


def with_arrow(batch: pa.Table) -> pa.Table:
    valid = batch.filter(batch["valid"])
    rate = RATE_VALUES.take(pc.index_in(valid["currency"], value_set=CURRENCIES))
    return pa.table({"day": valid["day"], "amount_usd": pc.multiply(valid["amount"], rate)})


def duckdb_forms() -> dict[str, Callable[[pa.Table], pa.Table]]:
    """The two SQL forms on one single-threaded DuckDB connection (a Ray task has one CPU)."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET threads = 1")
    connection.register("rates", pa.table({"currency": CURRENCIES, "rate": RATE_VALUES}))
    cases = " ".join(f"WHEN '{code}' THEN {rate!r}" for code, rate in RATES.items())

    def run(sql: str, batch: pa.Table) -> pa.Table:
        connection.register("batch", batch)
        try:
            return connection.sql(sql).to_arrow_table()
        finally:
            connection.unregister("batch")

    return {
        "duckdb_join": lambda batch: run(
            "SELECT day, amount * rate AS amount_usd FROM batch "
            "LEFT JOIN rates USING (currency) WHERE valid",
            batch,
        ),
        "duckdb_case": lambda batch: run(
            f"SELECT day, amount * CASE currency {cases} END AS amount_usd FROM batch WHERE valid",
            batch,
        ),
    }


def totals(table: pa.Table) -> tuple[int, float]:
    return table.num_rows, pc.sum(table["amount_usd"]).as_py()


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    pa.set_cpu_count(1)
    data = ensure_input(args.rows)
    batches = [pq.read_table(file, columns=JOB_COLUMNS) for file in data.files[: args.files]]
    forms = {"arrow": with_arrow, **duckdb_forms()}
    reference = [totals(with_arrow(batch)) for batch in batches]
    for name, form in forms.items():
        got = [totals(form(batch)) for batch in batches]
        for (rows, total), (want_rows, want_total) in zip(got, reference, strict=True):
            if rows != want_rows or abs(total - want_total) > 1e-6 * abs(want_total):
                raise VerificationError(
                    f"{name}: {rows} rows, {total} vs {want_rows}, {want_total}"
                )
    seconds: dict[str, list[float]] = {name: [] for name in forms}
    for repeat in range(args.repeats):
        names = list(forms)
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            began = time.perf_counter()
            for batch in batches:
                forms[name](batch)
            seconds[name].append(time.perf_counter() - began)
    rows = sum(batch.num_rows for batch in batches)
    for name, values in seconds.items():
        low, high = spread(values)
        print(f"{name:12} {median(values):.3f} s ({low:.3f}-{high:.3f}) for {rows:,} rows")
    best = min(("duckdb_join", "duckdb_case"), key=lambda name: median(seconds[name]))
    write_result(
        "sql_transform_vs_arrow",
        median(seconds[best]) / median(seconds["arrow"]),
        unit="x",
        better="lower",
        goal="< 1",
        baseline="pyarrow compute (pc.index_in + take) on the same batches, one thread",
        command=reproduce_command("bench/sql_transform.py", args, parser),
        details={
            "faster_sql_form": best,
            "rows": rows,
            "batches": len(batches),
            "seconds": seconds,
        },
        spread=spread([s / a for s, a in zip(seconds[best], seconds["arrow"], strict=True)]),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=60_000_000, help="rows of the ETL input")
    parser.add_argument("--files", type=int, default=8, help="input files, one batch each")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats")
    args = parser.parse_args(argv)
    return exit_code_of(lambda: run(args, parser))


if __name__ == "__main__":
    exit_now(main())
