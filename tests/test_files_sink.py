"""A write task's split of its blocks into partitions: every row in its partition's file, once,
in the block's order; rows outside the run's slice and rows without a partition value counted as
strays, never written. The files are read back with pyarrow, file by file."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_assets import PartitionSlice
from ray_assets.storage.files_sink import TableFilesSink

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
MULTI = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(start_date="2024-01-01"),
        "region": dg.StaticPartitionsDefinition(["east", "north", "west"]),
    }
)


def write(tmp_path: Path, blocks: list[pa.Table], columns: tuple[str, ...], sliced=None):
    sink = TableFilesSink(
        table_uri=str(tmp_path),
        storage_options=None,
        partition_columns=columns,
        partition_slice=sliced,
        expected_schema=None,
        write_uuid="test",
    )
    report = sink.write(blocks, SimpleNamespace(task_idx=0))
    by_partition: dict[tuple[str, ...], list[int]] = {}
    for file in report.files:
        key = tuple(file.partition_values[c] for c in columns)
        rows = pq.read_table(tmp_path / file.path).column("id").to_pylist()
        assert len(rows) == file.num_rows
        by_partition.setdefault(key, []).extend(rows)
    return by_partition, report.stray_counts


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped-block", "interleaved-block"])
def test_rows_land_in_their_partition_once_in_block_order(tmp_path: Path, grouped: bool) -> None:
    days = ["2024-01-02", "2024-01-01", "2024-01-03"]
    order = [0, 0, 0, 1, 1, 2, 2, 2, 2] if grouped else [0, 1, 2, 0, 2, 1, 0, 2, 2]
    block = pa.table({"id": list(range(len(order))), "day": [days[i] for i in order]})

    written, strays = write(tmp_path, [block], ("day",))

    expected = {(day,): [row for row, i in enumerate(order) if days[i] == day] for day in days}
    assert written == expected
    assert strays == {}


def test_rows_outside_the_slice_or_without_a_value_are_counted_not_written(
    tmp_path: Path,
) -> None:
    sliced = PartitionSlice.from_keys(DAILY, ["2024-01-01", "2024-01-03"], "day", asset_key="t")
    days = ["2024-01-03", None, "2024-01-02", "2024-01-01", "2024-01-03", None, "2024-01-02"]
    block = pa.table({"id": list(range(len(days))), "day": pa.array(days, pa.string())})

    written, strays = write(tmp_path, [block], ("day",), sliced)

    assert written == {("2024-01-03",): [0, 4], ("2024-01-01",): [3]}
    assert strays == {(None,): 2, ("2024-01-02",): 2}


def test_two_partition_columns_split_on_both_values(tmp_path: Path) -> None:
    sliced = PartitionSlice.from_keys(
        MULTI,
        ["2024-01-01|east", "2024-01-01|west", "2024-01-02|east"],
        {"date": "day", "region": "region"},
        asset_key="t",
    )
    rows = [
        ("2024-01-01", "west"),
        ("2024-01-02", "east"),
        ("2024-01-01", "east"),
        ("2024-01-01", "west"),
        ("2024-01-02", "north"),
        ("2024-01-02", "east"),
    ]
    block = pa.table(
        {
            "id": list(range(len(rows))),
            "day": [day for day, _ in rows],
            "region": [region for _, region in rows],
        }
    )

    written, strays = write(tmp_path, [block], sliced.columns, sliced)

    by_values = {
        tuple(dict(zip(sliced.columns, key, strict=True))[c] for c in ("day", "region")): ids
        for key, ids in written.items()
    }
    assert by_values == {
        ("2024-01-01", "west"): [0, 3],
        ("2024-01-02", "east"): [1, 5],
        ("2024-01-01", "east"): [2],
    }
    assert strays == {tuple({"day": "2024-01-02", "region": "north"}[c] for c in sliced.columns): 1}
