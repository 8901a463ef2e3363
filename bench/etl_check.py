"""The ETL benchmark's verification: every engine's table must hold the same 30 rows.

A timing of an engine that computed something else is meaningless, so each round's tables are
read back and compared before the round's timings count. The reference is DuckDB's table, itself
checked against the totals the generator computed with numpy (`etl_data.InputData.expected`),
so an error in the reference cannot make every engine "agree". Days and counts must match
exactly; sums within a relative 1e-6 (engines add floating-point numbers in different orders).

Tables are read from their Delta log (the files it lists and their partition values) and the
Parquet files themselves with pyarrow, never through a deltalake scan, which can abort the
process at exit on this machine (`/work/shared/research/pitfalls.md`).
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from _results import VerificationError
from etl_data import TABLE_NAME, day_keys

Daily = dict[str, tuple[float, int]]
"""Day -> (sum of amount_usd, count): one engine's output, or the generator's answer."""
RELATIVE_TOLERANCE = 1e-6


def read_daily_table(out: Path) -> Daily:
    """The `daily_usd` table under `out`, by day, read from its log and files (no scan).

    Refuses a table that is not partitioned by `day` or holds a day in more than one row: each
    engine must have finished the aggregation, not left partial sums for a reader to add up.
    """
    from deltalake import DeltaTable

    table_path = out / TABLE_NAME
    actions = pa.table(DeltaTable(str(table_path)).get_add_actions(flatten=True))
    if "partition.day" not in actions.column_names:
        raise VerificationError(f"{table_path} is not partitioned by day")
    daily: Daily = {}
    for path, day in zip(
        actions.column("path").to_pylist(), actions.column("partition.day").to_pylist(), strict=True
    ):
        rows = pq.ParquetFile(_local_file(table_path, path)).read(columns=["amount_usd", "orders"])
        for amount_usd, orders in zip(
            rows.column("amount_usd").to_pylist(), rows.column("orders").to_pylist(), strict=True
        ):
            if str(day) in daily:
                raise VerificationError(f"{table_path}: day {day} is in more than one row")
            daily[str(day)] = (float(amount_usd), int(orders))
    return daily


def check_against(engine: str, got: Daily, reference: Daily, reference_name: str) -> float:
    """Raise `VerificationError` unless `got` equals `reference`; return the largest relative
    difference of a day's sum (0 when identical), for the report."""
    if set(got) != set(day_keys()):
        missing = sorted(set(day_keys()) - set(got))
        extra = sorted(set(got) - set(day_keys()))
        raise VerificationError(
            f"{engine}: {len(got)} days; missing {missing[:5]}, unexpected {extra[:5]}"
        )
    worst = 0.0
    problems = []
    for day in day_keys():
        (got_sum, got_count), (ref_sum, ref_count) = got[day], reference[day]
        relative = abs(got_sum - ref_sum) / max(abs(ref_sum), 1e-12)
        worst = max(worst, relative)
        if got_count != ref_count or not math.isfinite(got_sum) or relative > RELATIVE_TOLERANCE:
            problems.append(
                f"{day}: sum {got_sum!r} vs {ref_sum!r} (relative {relative:.2e}), "
                f"count {got_count} vs {ref_count}"
            )
    if problems:
        raise VerificationError(
            f"{engine} differs from {reference_name} on {len(problems)} of {len(day_keys())} "
            "days: " + "; ".join(problems[:3])
        )
    return worst


def check_round(outputs: Mapping[str, Path], expected: Daily) -> dict[str, float]:
    """Check one round's tables (engine -> its out folder, DuckDB's among them): DuckDB's against
    the generator's totals, every other one against DuckDB's. Returns each engine's largest
    relative difference of a sum from its reference."""
    reference = read_daily_table(outputs["duckdb"])
    worst = {"duckdb": check_against("duckdb", reference, expected, "the generator's totals")}
    for engine, out in outputs.items():
        if engine != "duckdb":
            worst[engine] = check_against(engine, read_daily_table(out), reference, "duckdb")
    return worst


def _local_file(table_path: Path, path: str) -> Path:
    """An add action's file: relative paths are URL-encoded and under the table."""
    if "://" in path:
        return Path(urllib.parse.unquote(urllib.parse.urlparse(path).path))
    return table_path / urllib.parse.unquote(path)
