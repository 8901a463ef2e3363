"""DeltaStore on object storage: the core promises on a real S3-compatible server on loopback
(moto's server, in its own process), side by side with a local folder, plus what only an object
store can get wrong: concurrent writer processes, a killed writer, secrets, bad endpoints."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from ray_assets import (
    DeltaIOManager,
    DeltaStore,
    RayAssetsError,
    RayResource,
    SchemaMismatchError,
    StrayPartitionValuesError,
    ray_asset,
)
from ray_assets.errors import ObjectStoreError
from tests.lakes import DAILY, DAYS, daily, orders, rows_by_day
from tests.race_writers import ROWS_BY_WRITER, day_of, race
from tests.s3_server import SECRET_KEY, running_server

REPO = Path(__file__).resolve().parents[1]


def test_range_write_rewrite_and_rerun(ray_session, lake) -> None:
    store = lake.store("orders")
    first = store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    assert first.table_version == 0 and rows_by_day(store) == dict.fromkeys(DAYS, 50)
    again = store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    assert not again.committed and store.version() == 0  # the same run changes nothing
    store.write(orders(["2024-01-02"], rows_per_day=7), daily(["2024-01-02"]), write_id="run-2")
    assert rows_by_day(store) == {"2024-01-01": 50, "2024-01-02": 7, "2024-01-03": 50}
    back = store.read(daily(["2024-01-02"]), ["order_id"]).take_all()
    assert sorted(row["order_id"] for row in back) == list(range(7))
    assert first.table_uri == lake.uri("orders")  # as given: no credentials in it


def test_strays_and_schema_drift_are_refused_before_commit(ray_session, lake) -> None:
    import ray.data

    store = lake.store("orders")
    store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    with pytest.raises(StrayPartitionValuesError, match="2024-01-03: 50 row"):
        store.write(orders(DAYS), daily(["2024-01-01", "2024-01-02"]))
    drifted = pa.table({"order_id": ["a"], "order_date": ["2024-01-01"], "amount": [1.0]})
    with pytest.raises(SchemaMismatchError, match="order_id: table has int64, data has string"):
        store.write(ray.data.from_arrow(drifted), daily(["2024-01-01"]))
    assert store.version() == 0 and rows_by_day(store) == dict.fromkeys(DAYS, 50)


def test_a_writer_killed_before_its_commit_leaves_the_previous_version(ray_session, lake) -> None:
    store = lake.store("orders")
    store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    script = textwrap.dedent(
        f"""
        import os, sys, json
        sys.path.insert(0, {str(REPO)!r})
        import ray
        ray.init(address={ray_session!r}, log_to_driver=False)
        from ray_assets.storage import delta_commit
        delta_commit.SliceCommitter.commit = lambda *a, **k: os._exit(9)  # killed right there
        from tests.lakes import Lake, daily, orders
        lake = Lake({lake.root!r}, json.loads({__import__("json").dumps(lake.storage_options)!r}))
        lake.store("orders").write(orders(["2024-01-02"], 9), daily(["2024-01-02"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 9, done.stderr[-2000:]
    assert store.version() == 0  # readable, at the committed version
    assert rows_by_day(store) == dict.fromkeys(DAYS, 50)
    assert store.read(daily(["2024-01-02"])).count() == 50


@pytest.fixture(scope="module")
def s3_races(ray_session, s3) -> dict[str, Any]:
    """Two writer processes on one S3 table: other partitions each round, then the same one."""
    base = {"mode": "warn", "amount_type": {"a": "float64", "b": "float64"}}
    base["storage_options"] = s3.storage_options
    scenarios = [
        {**base, "name": "own", "uri": s3.uri("races", "own"), "rounds": 3, "own_day": True},
        {**base, "name": "same", "uri": s3.uri("races", "same"), "rounds": 3},
    ]
    outcomes = race(ray_session, scenarios)
    return {"outcomes": outcomes, "scenarios": {s["name"]: s for s in scenarios}}


def test_s3_writers_of_other_partitions_both_commit(s3_races, s3) -> None:
    store = DeltaStore(s3.uri("races", "own"), storage_options=s3.storage_options)
    for by_writer in s3_races["outcomes"]["own"].values():
        assert {w: o["status"] for w, o in by_writer.items()} == {"a": "ok", "b": "ok"}
    expected = {}
    for round_index in range(3):
        expected[day_of(2 * round_index)] = ROWS_BY_WRITER["a"]
        expected[day_of(2 * round_index + 1)] = ROWS_BY_WRITER["b"]
    assert rows_by_day(store) == expected
    assert store.version() == 5  # six commits, none lost


def test_s3_writers_of_one_partition_leave_one_writers_rows(s3_races, s3) -> None:
    store = DeltaStore(s3.uri("races", "same"), storage_options=s3.storage_options)
    counts = rows_by_day(store)
    for round_index, by_writer in s3_races["outcomes"]["same"].items():
        assert all(outcome["status"] == "ok" for outcome in by_writer.values())
        # one writer's rows, never both (5 + 7)
        assert counts[day_of(round_index)] in ROWS_BY_WRITER.values()


def test_the_secret_stays_out_of_task_arguments_metadata_and_errors(ray_session, s3) -> None:
    from ray_assets.storage.files_sink import TableFilesSink
    from ray_assets.storage.files_source import TableFilesDatasource

    store = DeltaStore(s3.uri("secret", "orders"), storage_options=s3.storage_options)
    sink = TableFilesSink(
        table_uri=store.table_uri,
        storage_options=store.storage_options,
        partition_columns=("order_date",),
        partition_slice=None,
        expected_schema=None,
        write_uuid="x",
    )
    source = TableFilesDatasource(
        files=[],
        table_schema=pa.schema([("a", pa.int64())]),
        partition_columns=[],
        columns=None,
        table_uri=store.table_uri,
        storage_options=store.storage_options,
    )
    import ray.cloudpickle

    for shipped in (sink, source):  # what Ray pickles into every write and read task
        assert SECRET_KEY.encode() not in ray.cloudpickle.dumps(shipped)
        assert SECRET_KEY not in repr(shipped._storage_options)
    assert ray.cloudpickle.loads(ray.cloudpickle.dumps(sink))._storage_options.get() == (
        store.storage_options
    )

    @ray_asset(partitions_def=DAILY, partition_column="order_date")
    def secret_orders(context: dg.AssetExecutionContext):
        return orders(list(context.partition_keys), rows_per_day=5)

    io_manager = DeltaIOManager(root_uri=s3.uri("secret"), storage_options=s3.storage_options)
    resources = {"ray": RayResource(), "delta_io_manager": io_manager}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [secret_orders], partition_key="2024-01-01", resources=resources, instance=instance
        )
        assert result.success
        logged = [entry for entry in instance.all_logs(result.run_id)]
        assert logged and not any(
            SECRET_KEY in pickle.dumps(entry).decode("latin-1") for entry in logged
        )
    metadata = result.asset_materializations_for_node("secret_orders")[0].metadata
    assert SECRET_KEY not in repr(metadata)
    assert metadata["dagster/uri"].value == s3.uri("secret", "secret_orders")
    # an error from the store names the table, never the secret
    missing = {**s3.storage_options}
    with pytest.raises(ObjectStoreError) as raised:
        DeltaStore("s3://no-such-bucket/orders", storage_options=missing).write(
            orders(["2024-01-01"]), daily(["2024-01-01"])
        )
    assert "s3://no-such-bucket/orders" in str(raised.value)
    assert SECRET_KEY not in str(raised.value)


def test_bad_buckets_and_endpoints_fail_fast_naming_the_table(ray_session, s3) -> None:
    import time

    unreachable = {**s3.storage_options, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    for uri, options in (
        ("s3://no-such-bucket/orders", s3.storage_options),
        (s3.uri("unreachable", "orders"), unreachable),
    ):
        started = time.monotonic()
        with pytest.raises(ObjectStoreError) as raised:
            DeltaStore(uri, storage_options=options).write(
                orders(["2024-01-01"]), daily(["2024-01-01"])
            )
        assert uri in str(raised.value) and "nothing was read or written" in str(raised.value)
        assert time.monotonic() - started < 60  # bounded retries, not object_store's minutes
    assert not list(
        s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="unreachable").get("Contents", [])
    )


def test_wrong_credentials_fail_naming_the_table_and_write_nothing(ray_session) -> None:
    with running_server(check_credentials=True) as checked:
        good = DeltaStore(checked.uri("orders"), storage_options=checked.storage_options)
        good.write(orders(["2024-01-01"]), daily(["2024-01-01"]), write_id="run-1")
        wrong = {**checked.storage_options, "AWS_SECRET_ACCESS_KEY": "not-the-secret-0000"}
        with pytest.raises(ObjectStoreError) as raised:
            DeltaStore(checked.uri("orders"), storage_options=wrong).write(
                orders(["2024-01-02"]), daily(["2024-01-02"])
            )
        message = str(raised.value)
        assert checked.uri("orders") in message and "nothing was read or written" in message
        assert "not-the-secret-0000" not in message and checked.secret_key not in message
        assert good.version() == 0 and rows_by_day(good) == {"2024-01-01": 50}


def test_the_unsafe_rename_option_is_refused(s3) -> None:
    with pytest.raises(RayAssetsError, match="conditional writes"):
        DeltaStore(
            s3.uri("orders"),
            storage_options={**s3.storage_options, "AWS_S3_ALLOW_UNSAFE_RENAME": "true"},
        )
