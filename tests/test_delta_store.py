"""DeltaStore: one streaming execution, one exact commit, nothing visible on failure."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from ray_assets import (
    DeltaStore,
    PartitionColumnError,
    PartitionSlice,
    PipelineFailedError,
    SchemaMismatchError,
    StrayPartitionValuesError,
)
from tests.conftest import delta_log_rows, delta_version, file_digests

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def orders(days: list[str], rows_per_day: int = 200, blocks: int = 3, amount_offset: float = 0.0):
    """A lazy dataset of `rows_per_day` orders per day, spread over `blocks` blocks."""
    import ray.data

    def make(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = batch["id"]
        return {
            "order_id": ids,
            "order_date": np.array(days, dtype=object)[ids % len(days)],
            "amount": ids * 1.5 + amount_offset,
            "product": np.array([f"p{i % 7}" for i in ids], dtype=object),
        }

    return ray.data.range(rows_per_day * len(days), override_num_blocks=blocks).map_batches(make)


def daily_slice(days: list[str], asset_key: str = "orders") -> PartitionSlice:
    return PartitionSlice.from_keys(DAILY, days, "order_date", asset_key=asset_key)


def test_range_write_creates_exactly_its_partitions_in_one_version(ray_session, tmp_path) -> None:
    store = DeltaStore(str(tmp_path / "orders"))
    result = store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")
    assert result.committed and result.table_version == 0
    assert delta_log_rows(tmp_path / "orders") == {day: 200 for day in DAYS}
    assert {k: p.rows for k, p in result.partitions.items()} == {day: 200 for day in DAYS}
    assert result.rows_written == result.table_row_count == 600
    assert result.files_written == sum(p.files for p in result.partitions.values())
    assert result.schema.names == ["order_id", "order_date", "amount", "product"]


def test_rewriting_one_key_replaces_that_key_only(ray_session, tmp_path) -> None:
    uri = tmp_path / "orders"
    store = DeltaStore(str(uri))
    store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")
    before = file_digests(uri)
    result = store.write(
        orders(["2024-01-02"], rows_per_day=50, amount_offset=1000),
        daily_slice(["2024-01-02"]),
        write_id="run-2",
    )
    assert result.table_version == 1
    assert delta_log_rows(uri) == {"2024-01-01": 200, "2024-01-02": 50, "2024-01-03": 200}
    after = file_digests(uri)
    untouched = {p: d for p, d in before.items() if "2024-01-02" not in p}
    assert untouched and {p: after[p] for p in untouched} == untouched
    assert not any("2024-01-02" in p for p in set(after) & set(before))
    assert store.read(daily_slice(["2024-01-02"])).min("amount") >= 1000


def test_rerunning_a_committed_write_changes_nothing(ray_session, tmp_path) -> None:
    store = DeltaStore(str(tmp_path / "orders"))
    first = store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")
    again = store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")
    assert not again.committed
    assert again.table_version == first.table_version == delta_version(tmp_path / "orders") == 0
    assert again.rows_written == 600
    assert {k: p.rows for k, p in again.partitions.items()} == {day: 200 for day in DAYS}
    assert delta_log_rows(tmp_path / "orders") == {day: 200 for day in DAYS}


def test_partition_that_comes_out_empty_ends_up_empty(ray_session, tmp_path) -> None:
    store = DeltaStore(str(tmp_path / "orders"))
    store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")
    result = store.write(orders(["2024-01-01"]), daily_slice(["2024-01-01", "2024-01-02"]))
    assert result.partitions["2024-01-02"].rows == 0
    assert delta_log_rows(tmp_path / "orders") == {"2024-01-01": 200, "2024-01-03": 200}


def test_stray_partition_values_fail_before_commit_with_counts(ray_session, tmp_path) -> None:
    uri = tmp_path / "orders"
    store = DeltaStore(str(uri))
    store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")
    with pytest.raises(StrayPartitionValuesError) as raised:
        store.write(orders(DAYS + ["2024-01-09"], rows_per_day=10), daily_slice(DAYS))
    message = str(raised.value)
    assert "asset 'orders'" in message and "'2024-01-01'..'2024-01-03'" in message
    assert "2024-01-09: 10 row(s)" in message
    assert delta_version(uri) == 0
    assert delta_log_rows(uri) == {day: 200 for day in DAYS}


def test_null_partition_values_are_strays(ray_session, tmp_path) -> None:
    import ray.data

    data = ray.data.from_arrow(pa.table({"order_date": ["2024-01-01", None], "x": [1, 2]}))
    with pytest.raises(StrayPartitionValuesError, match=r"<null>: 1 row"):
        DeltaStore(str(tmp_path / "t")).write(data, daily_slice(["2024-01-01"]))
    assert not (tmp_path / "t" / "_delta_log").exists()


def test_schema_mismatch_fails_with_a_column_diff(ray_session, tmp_path) -> None:
    import ray.data

    uri = tmp_path / "orders"
    store = DeltaStore(str(uri))
    store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")
    drifted = ray.data.from_arrow(
        pa.table(
            {
                "order_id": ["a"],
                "order_date": ["2024-01-01"],
                "product": ["p"],
                "discount": [0.1],
            }
        )
    )
    with pytest.raises(SchemaMismatchError) as raised:
        store.write(drifted, daily_slice(["2024-01-01"]))
    message = str(raised.value)
    assert "asset 'orders', partition '2024-01-01'" in message
    assert "~ order_id: table has int64, data has string" in message
    assert "- amount: double (in the table, missing from the data)" in message
    assert "+ discount: double (in the data, not in the table)" in message
    assert delta_version(uri) == 0


def test_pandas_large_strings_are_stored_as_delta_strings(ray_session, tmp_path) -> None:
    import pandas as pd
    import ray.data

    store = DeltaStore(str(tmp_path / "t"))
    frame = pd.DataFrame({"order_date": ["2024-01-01"] * 3, "name": ["a", "b", "c"]})
    store.write(ray.data.from_pandas(frame), daily_slice(["2024-01-01"]))
    # a second write from pandas (large_string) into the existing string table works
    result = store.write(ray.data.from_pandas(frame), daily_slice(["2024-01-01"]))
    assert result.schema.field("name").type == pa.string()
    assert delta_log_rows(tmp_path / "t") == {"2024-01-01": 3}


def test_exception_in_one_block_fails_naming_asset_partition_and_cause(
    ray_session, tmp_path
) -> None:
    uri = tmp_path / "orders"
    store = DeltaStore(str(uri))
    store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")

    def poison(batch):
        if (batch["order_id"] == 123).any():
            raise ValueError("amount is not a number in order 123")
        return batch

    with pytest.raises(PipelineFailedError) as raised:
        store.write(orders(DAYS).map_batches(poison), daily_slice(DAYS))
    message = str(raised.value)
    assert "asset 'orders', partitions '2024-01-01'..'2024-01-03'" in message
    assert "ValueError: amount is not a number in order 123 (in poison" in message
    assert delta_version(uri) == 0
    assert store.read(daily_slice(DAYS)).count() == 600


def test_worker_killed_mid_write_is_retried_without_duplicates(ray_session, tmp_path) -> None:
    marker = tmp_path / "killed-once"

    def die_once(batch):
        if (batch["order_id"] == 300).any() and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return batch

    store = DeltaStore(str(tmp_path / "orders"))
    result = store.write(orders(DAYS).map_batches(die_once), daily_slice(DAYS))
    assert marker.exists()
    assert result.table_version == 0 and result.rows_written == 600
    ids = store.read(daily_slice(DAYS), columns=["order_id"]).to_arrow_refs()
    import ray

    all_ids = pa.concat_tables(ray.get(ids))["order_id"].to_pylist()
    assert sorted(all_ids) == list(range(600))


def test_record_that_always_kills_its_worker_fails_after_bounded_retries(
    ray_session, tmp_path
) -> None:
    deaths = tmp_path / "deaths"
    deaths.mkdir()

    def always_die(batch):
        if (batch["order_id"] == 10).any():
            (deaths / str(os.getpid())).touch()
            os._exit(1)
        return batch

    store = DeltaStore(str(tmp_path / "orders"))
    with pytest.raises(PipelineFailedError, match="asset 'orders'"):
        store.write(
            orders(DAYS, rows_per_day=20, blocks=1).map_batches(always_die), daily_slice(DAYS)
        )
    assert len(list(deaths.iterdir())) == 4  # the first attempt and 3 retries, not forever
    assert store.version() is None


CRASH_BEFORE_COMMIT = textwrap.dedent(
    """
    import os, sys
    import dagster as dg, numpy as np, ray, ray.data
    from ray_assets import DeltaStore, PartitionSlice
    from ray_assets.storage import delta_commit

    ray.init(address=sys.argv[1])
    delta_commit.SliceCommitter.commit = lambda *args, **kwargs: os._exit(17)
    days = ["2024-01-01", "2024-01-02"]
    data = ray.data.range(100).map_batches(
        lambda b: {"order_id": b["id"], "order_date": np.array(days, dtype=object)[b["id"] % 2],
                   "amount": b["id"] * 9.0, "product": np.array(["z"] * len(b["id"]), dtype=object)})
    s = PartitionSlice.from_keys(dg.DailyPartitionsDefinition(start_date="2024-01-01"), days,
                                 "order_date", asset_key="orders")
    DeltaStore(sys.argv[2]).write(data, s)
    """
)


def test_crash_just_before_commit_leaves_the_previous_version(ray_session, tmp_path) -> None:
    uri = tmp_path / "orders"
    store = DeltaStore(str(uri))
    store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")
    before = file_digests(uri)
    script = tmp_path / "crash.py"
    script.write_text(CRASH_BEFORE_COMMIT)
    completed = subprocess.run(
        [sys.executable, str(script), ray_session, str(uri)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=Path(__file__).parent.parent,
    )
    assert completed.returncode == 17, completed.stderr[-3000:]
    assert delta_version(uri) == 0
    assert file_digests(uri) == before
    orphans = {str(p.relative_to(uri)) for p in uri.rglob("*.parquet")} - set(before)
    assert orphans, "the crashed write left its files, uncommitted"
    assert store.read(daily_slice(DAYS)).count() == 600


def test_ambiguous_commit_is_resolved_by_the_transaction_id(
    ray_session, tmp_path, monkeypatch
) -> None:
    from deltalake import DeltaTable

    uri = tmp_path / "orders"
    store = DeltaStore(str(uri))
    store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")
    real = DeltaTable.create_write_transaction
    calls = []

    def commit_then_lose_the_reply(self, *args, **kwargs):
        calls.append(1)
        real(self, *args, **kwargs)
        raise OSError("connection reset while reading the commit response")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", commit_then_lose_the_reply)
    result = store.write(orders(["2024-01-02"], rows_per_day=5), daily_slice(["2024-01-02"]))
    assert len(calls) == 1
    assert result.committed and result.table_version == 1 == delta_version(uri)
    assert delta_log_rows(uri)["2024-01-02"] == 5


def test_concurrent_writers_of_other_partitions_both_commit(ray_session, tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    uri = tmp_path / "orders"
    store = DeltaStore(str(uri))
    store.write(orders(DAYS, rows_per_day=10), daily_slice(DAYS), write_id="seed")
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(
                DeltaStore(str(uri)).write,
                orders([day], rows_per_day=7),
                daily_slice([day]),
                write_id=f"w-{day}",
            )
            for day in ["2024-01-01", "2024-01-03"]
        ]
        results = [f.result() for f in futures]
    assert sorted(r.table_version for r in results) == [1, 2]
    assert delta_log_rows(uri) == {"2024-01-01": 7, "2024-01-02": 10, "2024-01-03": 7}


def test_read_prunes_to_the_slice_and_projects_columns(ray_session, tmp_path) -> None:
    uri = tmp_path / "orders"
    store = DeltaStore(str(uri))
    store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")
    dataset = store.read(daily_slice(["2024-01-03"]), columns=["amount"])
    assert dataset.input_files() and all(
        "order_date=2024-01-03" in f for f in dataset.input_files()
    )
    assert dataset.columns() == ["order_date", "amount"]
    assert dataset.count() == 200
    assert set(dataset.unique("order_date")) == {"2024-01-03"}
    old = store.read(daily_slice(DAYS), version=0)
    assert old.count() == 600


def test_date_partition_column_round_trips_as_dates(ray_session, tmp_path) -> None:
    import ray.data

    table = pa.table(
        {
            "day": pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2)] * 5, pa.date32()),
            "v": range(10),
        }
    )
    store = DeltaStore(str(tmp_path / "t"))
    sliced = PartitionSlice.from_keys(DAILY, ["2024-01-01", "2024-01-02"], "day", asset_key="t")
    store.write(ray.data.from_arrow(table), sliced)
    back = store.read(PartitionSlice.from_keys(DAILY, ["2024-01-02"], "day", asset_key="t"))
    assert back.schema().base_schema.field("day").type == pa.date32()
    assert back.unique("day") == [dt.date(2024, 1, 2)]
    hourly = dg.HourlyPartitionsDefinition(start_date="2024-01-01-00:00")
    with pytest.raises(PartitionColumnError, match="cannot be stored exactly"):
        store.write(
            ray.data.from_arrow(table),
            PartitionSlice.from_keys(hourly, ["2024-01-01-05:00"], "day", asset_key="t"),
        )


def test_hostile_static_keys_stay_inside_the_table(ray_session, tmp_path) -> None:
    import ray.data

    keys = ["../../escape", "a/b", "x' OR '1'='1", ".."]
    static = dg.StaticPartitionsDefinition(keys)
    store = DeltaStore(str(tmp_path / "root" / "t"))
    store.write(
        ray.data.from_arrow(pa.table({"k": keys, "v": [1, 2, 3, 4]})),
        PartitionSlice.from_keys(static, keys, "k", asset_key="t"),
    )
    written = [p for p in tmp_path.rglob("*.parquet")]
    assert len(written) == 4
    assert all(str(p).startswith(str(tmp_path / "root" / "t")) for p in written)
    back = store.read(PartitionSlice.from_keys(static, ["a/b"], "k", asset_key="t"))
    assert back.take_all() == [{"k": "a/b", "v": 2}]


def test_wrong_partition_columns_for_an_existing_table(ray_session, tmp_path) -> None:
    store = DeltaStore(str(tmp_path / "orders"))
    store.write(orders(DAYS), daily_slice(DAYS), write_id="run-1")
    other = PartitionSlice.from_keys(DAILY, ["2024-01-01"], "product", asset_key="orders")
    with pytest.raises(PartitionColumnError, match=r"partitioned by \['order_date'\]"):
        store.write(orders(["2024-01-01"]), other)


def test_unpartitioned_table_is_replaced_whole(ray_session, tmp_path) -> None:
    import ray.data

    store = DeltaStore(str(tmp_path / "customers"))
    whole = PartitionSlice.unpartitioned("customers")
    store.write(ray.data.range(10).map(lambda r: {"customer_id": r["id"]}), whole)
    result = store.write(ray.data.range(4).map(lambda r: {"customer_id": r["id"]}), whole)
    assert result.table_version == 1 and result.table_row_count == 4
    assert delta_log_rows(tmp_path / "customers") == {"": 4}


def test_timestamp_partition_column_holds_each_window_start(ray_session, tmp_path) -> None:
    import ray.data

    hourly = dg.HourlyPartitionsDefinition(
        start_date="2024-11-03-00:00", timezone="America/New_York"
    )
    keys = ["2024-11-03-01:00", "2024-11-03-01:00-0500"]  # the hour that happens twice
    sliced = PartitionSlice.from_keys(hourly, keys, "hour", asset_key="clicks")
    starts = [hourly.time_window_for_partition_key(k).start for k in keys]
    kind = pa.timestamp("us", tz="America/New_York")
    store = DeltaStore(str(tmp_path / "clicks"))
    result = store.write(
        ray.data.from_arrow(pa.table({"hour": pa.array(starts * 3, kind), "v": range(6)})), sliced
    )
    assert {k: p.rows for k, p in result.partitions.items()} == {keys[0]: 3, keys[1]: 3}
    assert delta_log_rows(tmp_path / "clicks") == {
        "2024-11-03 05:00:00+00:00": 3,  # 01:00 EDT
        "2024-11-03 06:00:00+00:00": 3,  # 01:00 EST
    }
    back = store.read(PartitionSlice.from_keys(hourly, [keys[1]], "hour", asset_key="clicks"))
    assert [r["v"] for r in back.take_all()] == [1, 3, 5]
    assert (
        back.take_all()[0]["hour"].timestamp() == starts[1].timestamp()
    )  # PEP 495: compare instants
    half_past = starts[0] + dt.timedelta(minutes=30)
    with pytest.raises(StrayPartitionValuesError, match="2024-11-03 05:30:00.000000: 1 row"):
        store.write(
            ray.data.from_arrow(pa.table({"hour": pa.array([half_past], kind), "v": [9]})), sliced
        )


def test_naive_timestamp_partition_column_is_refused(ray_session, tmp_path) -> None:
    import ray.data

    hourly = dg.HourlyPartitionsDefinition(start_date="2024-01-01-00:00")
    sliced = PartitionSlice.from_keys(hourly, ["2024-01-01-05:00"], "hour", asset_key="clicks")
    naive = pa.table({"hour": pa.array([dt.datetime(2024, 1, 1, 5)], pa.timestamp("us")), "v": [1]})
    with pytest.raises(PartitionColumnError, match="time-zone-aware timestamp"):
        DeltaStore(str(tmp_path / "clicks")).write(ray.data.from_arrow(naive), sliced)
