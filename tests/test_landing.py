"""The landing-folder source: a sensor that requests exactly the days that got new or late files,
the daily asset that reads them, and the folder's version as an observable source."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from definitions.landing import LandingFolder, folder_version, landed_orders, landing_sensor
from ray_assets import DeltaIOManager, RayResource
from tests.conftest import delta_log_rows, delta_version


def drop(landing: Path, day: str, name: str, rows: int, *, csv: bool = False) -> Path:
    """Land an export of `rows` orders for `day`, as the order system would."""
    folder = landing / f"order_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "order_id": [f"{day}-{name}-{i}" for i in range(rows)],
            "order_date": [day] * rows,
            "amount": [float(i) for i in range(rows)],
        }
    )
    path = folder / f"{name}.{'csv' if csv else 'parquet'}"
    if csv:
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def tick(landing: Path, cursor: str | None) -> tuple[list[str], str | None]:
    """One sensor evaluation: the requested partition keys and the new cursor."""
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={"landing": LandingFolder(path=str(landing))},
        )
        result = landing_sensor(context)
    if isinstance(result, dg.SkipReason):
        return [], cursor
    return [r.partition_key for r in result.run_requests], result.cursor


def test_sensor_requests_exactly_the_days_with_new_or_late_files(tmp_path) -> None:
    landing = tmp_path / "landing"
    assert tick(landing, None) == ([], None)  # no folder yet: nothing to do
    drop(landing, "2024-01-02", "a", 3)
    drop(landing, "2024-01-03", "a", 2)
    days, cursor = tick(landing, None)
    assert days == ["2024-01-02", "2024-01-03"]
    assert tick(landing, cursor) == ([], cursor)  # unchanged folder: nothing requested
    drop(landing, "2024-01-02", "late", 4)  # a late file for an old day
    days, cursor = tick(landing, cursor)
    assert days == ["2024-01-02"]
    rewritten = drop(landing, "2024-01-03", "a", 5)  # the export of a day rewritten
    os.utime(rewritten, ns=(1, 1))
    days, cursor = tick(landing, cursor)
    assert days == ["2024-01-03"]
    assert set(json.loads(cursor)) == {str(p) for p in landing.rglob("*.parquet")}


def test_files_outside_day_folders_are_ignored(tmp_path) -> None:
    landing = tmp_path / "landing"
    (landing / "order_date=not-a-day").mkdir(parents=True)
    (landing / "order_date=not-a-day" / "x.parquet").write_bytes(b"")
    (landing / "README.txt").write_text("exports land here")
    drop(landing, "2024-01-05", "a", 1)
    partial = drop(landing, "2024-01-06", "a", 1)
    partial.rename(partial.with_suffix(".parquet.tmp"))  # still being written
    assert tick(landing, None)[0] == ["2024-01-05"]


def test_a_requested_day_materializes_exactly_that_day(ray_session, tmp_path) -> None:
    landing = tmp_path / "landing"
    drop(landing, "2024-01-02", "a", 3)
    drop(landing, "2024-01-02", "b", 2, csv=True)
    drop(landing, "2024-01-03", "a", 7)
    resources = {
        "ray": RayResource(),
        "delta_io_manager": DeltaIOManager(root_uri=str(tmp_path / "tables")),
        "landing": LandingFolder(path=str(landing)),
    }
    table = tmp_path / "tables" / "landed_orders"
    with dg.instance_for_test() as instance:
        for day in ("2024-01-02", "2024-01-03"):
            result = dg.materialize(
                [landed_orders], resources=resources, instance=instance, partition_key=day
            )
            assert result.success
        assert delta_log_rows(table) == {"2024-01-02": 5, "2024-01-03": 7}
        drop(landing, "2024-01-02", "late", 4)  # the late file: the day is replaced, not appended
        dg.materialize(
            [landed_orders], resources=resources, instance=instance, partition_key="2024-01-02"
        )
    assert delta_log_rows(table) == {"2024-01-02": 9, "2024-01-03": 7}
    assert delta_version(table) == 2


def test_folder_version_changes_when_a_file_lands(tmp_path) -> None:
    landing = LandingFolder(path=str(tmp_path / "landing"))
    empty = folder_version(landing)
    drop(tmp_path / "landing", "2024-01-02", "a", 1)
    landed = folder_version(landing)
    assert landed != empty
    assert folder_version(landing) == landed


def test_a_day_with_no_exports_is_an_empty_partition(ray_session, tmp_path) -> None:
    resources = {
        "ray": RayResource(),
        "delta_io_manager": DeltaIOManager(root_uri=str(tmp_path / "tables")),
        "landing": LandingFolder(path=str(tmp_path / "landing")),
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [landed_orders], resources=resources, instance=instance, partition_key="2024-01-09"
        )
    assert result.success
    (event,) = result.asset_materializations_for_node("landed_orders")
    assert event.metadata["dagster/partition_row_count"].value == 0
    assert delta_log_rows(tmp_path / "tables" / "landed_orders") == {}
