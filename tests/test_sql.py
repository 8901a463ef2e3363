"""SqlDatabase against a real PostgreSQL server (and SQLite): sharded reads, bound parameters,
partition-scoped atomic replace, redacted secrets, clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ray_assets.connectors.sql import SqlDatabase
from ray_assets.errors import SqlDatabaseError, StrayPartitionValuesError
from ray_assets.partition_slice import PartitionSlice

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-05")
ROWS = 1_000_000


def _orders(rows: int, days: int = 4, first_id: int = 0) -> pa.Table:
    """`rows` orders over `days` days, 8 columns."""
    import numpy as np

    ids = np.arange(first_id, first_id + rows, dtype=np.int64)
    day_names = pa.array([f"2024-01-0{1 + d}" for d in range(days)])
    return pa.table(
        {
            "id": ids,
            "day": day_names.take(pa.array(ids % days)),
            "customer_id": ids % 9_973,
            "amount": ids * 0.25,
            "quantity": (ids % 7).astype(np.int32),
            "currency": pa.array(["EUR", "USD", "GBP"]).take(pa.array(ids % 3)),
            "paid": ids % 5 != 0,
            "note": pa.array(["n"] * rows),
        }
    )


@pytest.fixture(scope="module")
def warehouse(postgres, ray_session) -> SqlDatabase:
    """The server with `orders` (1M rows over 4 days) loaded once for the module."""
    database = SqlDatabase(url=postgres.url)
    assert database.write(_orders(ROWS), "orders") == ROWS
    return database


def _slice(*keys: str) -> PartitionSlice:
    return PartitionSlice.from_keys(DAYS, list(keys), "day", asset_key="orders")


def _count(database: SqlDatabase, table: str, where: str = "", params: tuple = ()) -> int:
    return database.fetch(f"SELECT COUNT(*) AS n FROM {table} {where}", params)["n"][0].as_py()


def test_a_sharded_read_returns_every_row_once(warehouse) -> None:
    dataset = warehouse.read("orders", columns=["id", "day"], shard_column="id", shards=4)
    ids = dataset.to_arrow_refs()
    import ray

    table = pa.concat_tables(ray.get(ids))
    assert table.num_rows == ROWS and len(pc.unique(table["id"])) == ROWS
    assert "ReadSql(orders): 4 tasks executed" in dataset.materialize().stats()


def test_the_slice_is_respected(warehouse) -> None:
    dataset = warehouse.read(
        "orders", partition=_slice("2024-01-02", "2024-01-04"), shard_column="id", shards=3
    )
    table = dataset.to_arrow_refs()
    import ray

    rows = pa.concat_tables(ray.get(table))
    assert set(rows["day"].to_pylist()) == {"2024-01-02", "2024-01-04"}
    assert rows.num_rows == ROWS // 2
    assert rows.schema.names == _orders(1).schema.names


def test_hash_shards_cover_every_row_once(warehouse) -> None:
    dataset = warehouse.read(
        "orders",
        columns=["id"],
        shard_column="currency",
        shard_by="hash",
        shards=3,
        where={"day": "2024-01-01"},
    )
    ids = dataset.to_pandas()["id"]
    assert len(ids) == ROWS // 4 and ids.is_unique


HOSTILE = [
    "x' OR '1'='1",
    "1; DROP TABLE orders; --",
    "\u2019 OR \u20181\u2019=\u20181",
    "back\\slash'",
]


def test_hostile_values_are_bound_never_spliced(warehouse, postgres) -> None:
    static = dg.StaticPartitionsDefinition(HOSTILE)
    hostile_slice = PartitionSlice.from_keys(static, HOSTILE, "day", asset_key="orders")
    assert warehouse.read("orders", partition=hostile_slice, shard_column="id").count() == 0
    for value in HOSTILE:
        assert warehouse.read("orders", where={"day": value, "note": value}).count() == 0
    assert _count(warehouse, "orders") == ROWS  # every table intact
    log = postgres.statements_logged()
    if not log:
        pytest.skip("a server of your own: its statement log is not readable here")
    statements = [line for line in log.splitlines() if "statement:" in line or "execute" in line]
    assert any("IN ($" in line for line in statements)  # the values went as parameters ...
    for value in HOSTILE:
        assert not any(value in line for line in statements), value  # ... never as SQL text


def test_a_killed_writer_leaves_the_old_rows(postgres, ray_session, tmp_path) -> None:
    """The writer is killed (SIGKILL) after its DELETE ran and while its COPY streams: the
    server rolls the transaction back and every old row of the slice is there."""
    database = SqlDatabase(url=postgres.url)
    database.write(_orders(40_000, days=4), "killed")
    before = _count(database, "killed", "WHERE day = $1", ("2024-01-02",))
    marker = tmp_path / "deleted"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        import pyarrow as pa
        import dagster as dg
        from ray_assets.connectors.sql.sessions import open_session
        from ray_assets.connectors.sql.writes import replace_slice

        def batches():
            yield pa.record_batch({{"id": [1], "day": ["2024-01-02"]}})
            Path({str(marker)!r}).write_text("the delete ran; the load is streaming")
            time.sleep(600)
            yield pa.record_batch({{"id": [2], "day": ["2024-01-02"]}})

        schema = pa.schema([("id", pa.int64()), ("day", pa.string())])
        session = open_session(sys.argv[1])
        replace_slice(session, "killed", schema, batches(),
                      slice_keys=[{{"day": "2024-01-02"}}], what="test")
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script, postgres.url])
    try:
        _wait_for(marker, writer)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert _count(database, "killed", "WHERE day = $1", ("2024-01-02",)) == before == 10_000


def _wait_for(marker: Path, process: subprocess.Popen) -> None:
    def reached() -> bool:
        assert process.poll() is None, "the writer died before its load started"
        return marker.exists()

    _wait_until(reached, "the writer never reached its load")


def test_a_rerun_replaces_the_slice_instead_of_adding(postgres, ray_session) -> None:
    import ray.data

    database = SqlDatabase(url=postgres.url)
    database.write(_orders(4_000), "rerun")
    day = _slice("2024-01-03")
    new = ray.data.from_arrow(_orders(4_000, first_id=10_000)).filter(
        expr=ray.data.expressions.col("day") == "2024-01-03"
    )
    for _ in range(2):
        assert database.write(new, "rerun", partition=day) == 1_000
    assert _count(database, "rerun") == 4_000
    assert _count(database, "rerun", "WHERE day = $1 AND id >= $2", ("2024-01-03", 10_000)) == 1_000


def test_rows_outside_the_slice_are_refused_and_nothing_changes(postgres, ray_session) -> None:
    database = SqlDatabase(url=postgres.url)
    database.write(_orders(4_000), "stray")
    with pytest.raises(StrayPartitionValuesError, match="outside the run's partitions"):
        database.write(_orders(4_000, first_id=50_000), "stray", partition=_slice("2024-01-01"))
    assert _count(database, "stray") == 4_000
    assert _count(database, "stray", "WHERE id >= $1", (50_000,)) == 0


def test_a_missing_table_is_created_from_the_arrow_schema(postgres, ray_session) -> None:
    database = SqlDatabase(url=postgres.url)
    database.write(_orders(100), "created_here")
    columns = database.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = $1 ORDER BY ordinal_position",
        ("created_here",),
    ).to_pylist()
    assert database.has_table("created_here") and not database.has_table("never_created")
    assert [c["column_name"] for c in columns] == _orders(1).schema.names
    assert {c["column_name"]: c["data_type"] for c in columns}["amount"] == "double precision"


def test_bad_input_is_named_without_the_password(postgres, ray_session) -> None:
    from postgres_server import PASSWORD

    wrong = postgres.url.replace(PASSWORD, "not-the-password")
    closed = "postgresql://ray_assets:" + PASSWORD + "@127.0.0.1:1/postgres"
    for url, expected in ((wrong, "cannot connect"), (closed, "cannot connect")):
        with pytest.raises(SqlDatabaseError, match=expected) as raised:
            SqlDatabase(url=url).read("orders")
        assert PASSWORD not in str(raised.value) and "not-the-password" not in str(raised.value)
        assert "***" in str(raised.value)
    database = SqlDatabase(url=postgres.url)
    with pytest.raises(SqlDatabaseError, match="table no_such_table") as raised:
        database.read("no_such_table")
    assert PASSWORD not in str(raised.value)

    database.write(pa.table({"id": [1, 2]}), "holds_ints")
    nested = pa.table({"id": pa.array([[{"a": 1}]], pa.list_(pa.struct([("a", pa.int64())])))})
    with pytest.raises(
        SqlDatabaseError, match="(?s)holds_ints.*struct.*nothing was written"
    ) as raised:
        database.write(nested, "holds_ints")
    assert PASSWORD not in str(raised.value)
    assert sorted(database.fetch("SELECT id FROM holds_ints")["id"].to_pylist()) == [1, 2]


def test_a_canary_secret_appears_nowhere(postgres, ray_session, capfd) -> None:
    """The password, given through dg.EnvVar, is not in the event log, the metadata, the run
    config, the captured output, or the error of a failed step."""
    from postgres_server import PASSWORD

    os.environ["RAY_ASSETS_TEST_WAREHOUSE_URL"] = postgres.url
    try:

        @dg.asset(partitions_def=DAYS)
        def exported(context, warehouse: SqlDatabase) -> None:
            day = PartitionSlice.from_keys(
                DAYS, [context.partition_key], "day", asset_key="exported"
            )
            rows = warehouse.write(
                _orders(400).filter(pc.field("day") == context.partition_key),
                "exported",
                partition=day,
            )
            context.add_output_metadata({"rows": rows, "database": warehouse.redacted_url})

        @dg.asset
        def broken(warehouse: SqlDatabase) -> None:
            warehouse.read("missing_table")

        instance = dg.DagsterInstance.ephemeral()
        resources = {"warehouse": SqlDatabase(url=dg.EnvVar("RAY_ASSETS_TEST_WAREHOUSE_URL"))}
        good = dg.materialize(
            [exported], partition_key="2024-01-02", resources=resources, instance=instance
        )
        bad = dg.materialize([broken], resources=resources, instance=instance, raise_on_error=False)
    finally:
        del os.environ["RAY_ASSETS_TEST_WAREHOUSE_URL"]
    assert good.success and not bad.success
    texts = [str(record) for record in instance.all_logs(good.run_id)]
    texts += [str(record) for record in instance.all_logs(bad.run_id)]
    texts += [str(instance.get_run_by_id(run).run_config) for run in (good.run_id, bad.run_id)]
    captured = capfd.readouterr()
    texts += [captured.out, captured.err]
    failure = bad.get_step_failure_events()[0].event_specific_data.error
    texts.append(str(failure))
    assert "missing_table" in texts[-1]  # the error is there, named ...
    for text in texts:
        assert PASSWORD not in text  # ... and the password nowhere


def test_sqlite_and_sqlalchemy_urls_read_and_write_the_same(tmp_path, ray_session) -> None:
    data = _orders(20_000)
    for url in (f"sqlite:///{tmp_path}/adbc.db", f"sqlite+pysqlite:///{tmp_path}/alchemy.db"):
        database = SqlDatabase(url=url)
        assert database.write(data, "orders") == 20_000
        database.write(
            data.filter(pc.field("day") == "2024-01-02"), "orders", partition=_slice("2024-01-02")
        )
        read = database.read(
            "orders", partition=_slice("2024-01-02", "2024-01-03"), shard_column="id", shards=3
        ).to_pandas()
        assert len(read) == 10_000 and read["id"].is_unique, url
        assert set(read["day"]) == {"2024-01-02", "2024-01-03"}, url
        assert database.read("orders", where={"day": HOSTILE[0]}).count() == 0


def test_assets_live_in_sql_tables_through_the_io_manager(postgres, ray_session) -> None:
    """A `ray_asset` stored by `SqlIOManager`, and a plain asset downstream that loads its
    partitions as a table: a two-day range is one run, and running it again replaces the same
    rows instead of adding them."""
    import ray.data

    from ray_assets import RayResource, materialize_partition_range, ray_asset
    from ray_assets.connectors.sql import SqlIOManager

    @ray_asset(partitions_def=DAYS, partition_column="day", io_manager_key="warehouse_io")
    def daily_orders(context):
        keys = list(context.partition_keys)
        return ray.data.from_arrow(_orders(8_000).filter(pc.field("day").isin(keys)))

    @dg.asset(
        partitions_def=DAYS,
        io_manager_key="warehouse_io",
        metadata={"partition_expr": "day"},
        ins={"daily_orders": dg.AssetIn(metadata={"columns": ["id", "day"]})},
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def orders_per_day(daily_orders: pa.Table) -> pa.Table:
        assert daily_orders.column_names == ["id", "day"]
        return daily_orders.group_by("day").aggregate([("id", "count")])

    database = SqlDatabase(url=postgres.url)
    resources = {"ray": RayResource(), "warehouse_io": SqlIOManager(database=database)}
    for _ in range(2):
        result = materialize_partition_range(
            [daily_orders, orders_per_day], "2024-01-02", "2024-01-03", resources=resources
        )
        assert result.success
    assert _count(database, "daily_orders") == 4_000
    per_day = database.fetch("SELECT day, id_count FROM orders_per_day ORDER BY day").to_pylist()
    assert per_day == [
        {"day": "2024-01-02", "id_count": 2_000},
        {"day": "2024-01-03", "id_count": 2_000},
    ]
    metadata = result.asset_materializations_for_node("daily_orders")[0].metadata
    assert metadata["dagster/row_count"].value == 4_000
    assert "***" in metadata["database"].value


def test_two_runs_replacing_one_day_leave_one_runs_rows(postgres, ray_session, tmp_path) -> None:
    """Writer A (another process) holds the day mid-load; writer B, replacing the same day,
    waits for it instead of deleting before A commits, then replaces A's rows: the day holds
    B's rows only, never both runs'. Other days are untouched."""
    import threading

    database = SqlDatabase(url=postgres.url)
    database.write(_orders(4_000), "raced")
    loading, release = tmp_path / "loading", tmp_path / "release"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        import pyarrow as pa
        from ray_assets.connectors.sql.sessions import open_session
        from ray_assets.connectors.sql.writes import replace_slice

        def batches():
            yield pa.record_batch({{"id": list(range(100_000, 100_500)),
                                   "day": ["2024-01-02"] * 500}})
            Path({str(loading)!r}).write_text("A holds the day")
            while not Path({str(release)!r}).exists():
                time.sleep(0.02)

        schema = pa.schema([("id", pa.int64()), ("day", pa.string())])
        replace_slice(open_session(sys.argv[1]), "raced", schema, batches(),
                      slice_keys=[{{"day": "2024-01-02"}}], what="writer A")
        """
    )
    writer_a = subprocess.Popen([sys.executable, "-c", script, postgres.url])
    try:
        _wait_for(loading, writer_a)
        b_rows = pa.table(
            {"id": pa.array(range(200_000, 200_300), pa.int64()), "day": ["2024-01-02"] * 300}
        )
        outcome: dict = {}
        writer_b = threading.Thread(
            target=lambda: outcome.update(
                rows=database.write(b_rows, "raced", partition=_slice("2024-01-02"))
            )
        )
        writer_b.start()
        _wait_until(
            lambda: (
                _count(database, "pg_locks", "WHERE locktype = 'advisory' AND NOT granted") == 1
            ),
            "writer B never queued behind writer A",
        )
        assert writer_b.is_alive()
        release.write_text("go")
        assert writer_a.wait(timeout=60) == 0
        writer_b.join(timeout=60)
        assert outcome.get("rows") == 300
    finally:
        if writer_a.poll() is None:
            writer_a.kill()
    day = database.fetch("SELECT id FROM raced WHERE day = $1", ("2024-01-02",))["id"]
    assert sorted(day.to_pylist()) == list(range(200_000, 200_300))
    assert _count(database, "raced", "WHERE day <> $1", ("2024-01-02",)) == 3_000


def _wait_until(condition, failure: str) -> None:
    import time

    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def test_a_failing_pipeline_is_told_by_its_root_cause_and_writes_nothing(
    postgres, ray_session
) -> None:
    import ray.data

    database = SqlDatabase(url=postgres.url)
    database.write(_orders(4_000), "pipeline_failed")
    broken = ray.data.from_arrow(_orders(1_000)).map_batches(  # one block: nothing to cancel
        lambda batch: batch.drop_columns(["no_such_column"]), batch_format="pyarrow"
    )
    with pytest.raises(SqlDatabaseError) as raised:
        database.write(broken, "pipeline_failed", partition=_slice("2024-01-02"))
    message = str(raised.value)
    assert "table pipeline_failed for asset 'orders', partition '2024-01-02'" in message
    assert "KeyError" in message and "no_such_column" in message
    assert "nothing was written" in message and "ray::" not in message
    assert _count(database, "pipeline_failed") == 4_000


def test_a_query_with_its_own_where_reads_in_shards(warehouse) -> None:
    """The shard bounds go into the outer query's own WHERE, whatever the user's query holds."""
    dataset = warehouse.read(
        query="SELECT id, day FROM orders WHERE paid AND day = $1",
        query_params=["2024-01-03"],
        where={"day": "2024-01-03"},
        shard_column="id",
        shards=3,
    )
    ids = dataset.to_pandas()["id"]
    assert len(ids) == ROWS // 4 - ROWS // 20 and ids.is_unique  # every 5th id is unpaid
    assert "ReadSql(query): 3 tasks executed" in dataset.materialize().stats()
    alone = warehouse.read(
        query="SELECT id FROM orders WHERE NOT paid", shard_column="id", shards=2
    )
    assert alone.count() == ROWS // 5
