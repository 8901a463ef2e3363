"""Column statistics of written files: read from the Parquet footer, equal to a pass over the data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ray_assets.storage.file_stats import column_statistics


def test_footer_statistics_equal_a_pass_over_the_data(tmp_path: Path) -> None:
    long_text = "x" * 40
    table = pa.table(
        {
            "i32": pa.array([3, None, -7, 12, 0, None], pa.int32()),
            "u64": pa.array([2**63 + 5, 1, 7, None, 3, 9], pa.uint64()),
            "f64": [1.5, -0.0, None, 2.25, -3.5, 8.0],
            "with_nan": [1.0, float("nan"), 2.0, None, 0.5, 4.0],
            "with_inf": [1.0, float("inf"), 2.0, 3.0, 0.5, 4.0],
            "text": ["pear", "apple", None, "zucchini", "Äpfel", "fig"],
            "long_text": ["a", long_text, "b", "c", "d", "e"],
            "day": pa.array([dt.date(2024, 1, d) for d in (5, 2, 9, 1, 3, 4)]),
            "all_null": pa.array([None] * 6, pa.string()),
            "flag": [True, False, None, True, True, False],
            "ts": pa.array(
                [dt.datetime(2024, 1, 1, h) for h in range(6)], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    footers: list[pq.FileMetaData] = []
    # row groups of 2 rows: bounds must combine across groups, including an all-null group
    pq.write_table(table, tmp_path / "f.parquet", row_group_size=2, metadata_collector=footers)

    from_footer = column_statistics(table, footers[0])
    from_data = column_statistics(table)
    assert from_footer == from_data
    nulls, lows, highs = from_footer
    assert (lows["i32"], highs["i32"]) == (-7, 12)
    assert (lows["u64"], highs["u64"]) == (1, 2**63 + 5)
    assert (lows["text"], highs["text"]) == ("apple", "Äpfel")  # byte order, as Delta compares
    assert (lows["day"], highs["day"]) == ("2024-01-01", "2024-01-09")
    for omitted in ("with_nan", "with_inf", "long_text", "all_null", "flag", "ts"):
        assert omitted not in lows and omitted not in highs, omitted
    assert nulls["i32"] == 2 and nulls["all_null"] == 6 and nulls["with_nan"] == 1
