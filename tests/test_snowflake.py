"""SnowflakeDatabase against fakesnow's server: the real Snowflake connector talks HTTP to an
emulator on loopback (DuckDB underneath), so logins, bound parameters, Arrow result chunks,
PUT to a stage, COPY INTO and transactions all take their real client paths.

What an emulator leaves untested (README): chunked results (fakesnow sends every result as one
inline chunk, so a read has one task here), real authentication (fakesnow accepts any password),
Snowflake's own type coercions and locking, and NULL timestamps (fakesnow returns them as
1970-01-01, so no test data holds one).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

fakesnow = pytest.importorskip("fakesnow", reason="the snowflake extra is not installed")

from ray_assets.connectors.snowflake import SnowflakeDatabase  # noqa: E402
from ray_assets.connectors.snowflake.reads import spread  # noqa: E402
from ray_assets.errors import (  # noqa: E402
    StrayPartitionValuesError,
    UnstorableValueError,
    WarehouseError,
)
from ray_assets.partition_slice import PartitionSlice  # noqa: E402

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-05")
HOSTILE = ["x' OR '1'='1", "1; DROP TABLE orders; --", "\u2019 OR \u20181\u2019=\u20181", "b\\'"]


@pytest.fixture(scope="module")
def server() -> dict:
    with fakesnow.server() as connection_kwargs:
        yield connection_kwargs


def _database(server: dict, **changes) -> SnowflakeDatabase:
    options = dict(
        account="fakesnow",
        user="fake",
        password="snow",
        database="RAY",
        db_schema="ETL",
        host=server["host"],
        port=server["port"],
        protocol=server["protocol"],
        login_timeout=10,
    )
    return SnowflakeDatabase(**(options | changes))


def _orders(rows: int, days: int = 4, first_id: int = 0) -> pa.Table:
    import numpy as np

    ids = np.arange(first_id, first_id + rows, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "day": pa.array([f"2024-01-0{1 + d}" for d in range(days)]).take(pa.array(ids % days)),
            "amount": ids * 0.25,
            "quantity": (ids % 7).astype(np.int32),
            "paid": ids % 5 != 0,
        }
    )


def _slice(*keys: str) -> PartitionSlice:
    return PartitionSlice.from_keys(DAYS, list(keys), "day", asset_key="orders")


def _count(database: SnowflakeDatabase, table: str, where: str = "", params=()) -> int:
    return database.fetch(f'SELECT COUNT(*) AS "n" FROM "{table}" {where}', params)[0][0].as_py()


def test_a_written_table_reads_back_whole_and_sliced(server, ray_session) -> None:
    database = _database(server)
    assert database.write(_orders(40_000), "orders") == 40_000
    assert database.has_table("orders") and not database.has_table("no_such_table")
    whole = database.read("orders").to_arrow_refs()
    import ray

    table = pa.concat_tables(ray.get(whole))
    assert table.num_rows == 40_000 and len(pc.unique(table["id"])) == 40_000
    assert table.schema.field("id").type == pa.int64()
    days = database.read(
        "orders", columns=["id", "day"], partition=_slice("2024-01-02", "2024-01-04")
    )
    rows = days.to_pandas()
    assert len(rows) == 20_000 and set(rows["day"]) == {"2024-01-02", "2024-01-04"}
    assert list(rows.columns) == ["id", "day"]
    assert database.read("orders", where={"day": "2024-01-03", "paid": False}).count() == 2_000


def test_result_chunks_spread_over_tasks_in_order_and_balanced() -> None:
    assert spread([100, 100, 100, 100], 2) == [[0, 1], [2, 3]]
    assert spread([10, 500, 10, 10, 10, 500], 3) == [[0, 1], [2, 3, 4], [5]]
    groups = spread([50] * 10, 4)
    assert [i for group in groups for i in group] == list(range(10)) and len(groups) == 4
    assert all(groups) and spread([], 4) == [] and spread([7], 8) == [[0]]


class _Sent(logging.Handler):
    """The statements the Snowflake connector sends, from its own debug log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if (text := record.getMessage()).startswith("query: ["):
            self.texts.append(text)


def test_hostile_values_are_bound_never_spliced(server, ray_session) -> None:
    database = _database(server)
    database.write(_orders(4_000), "hostile")
    static = dg.StaticPartitionsDefinition(HOSTILE)
    hostile = PartitionSlice.from_keys(static, HOSTILE, "day", asset_key="hostile")
    logger, sent = logging.getLogger("snowflake.connector.cursor"), _Sent()
    level = logger.level
    logger.addHandler(sent)
    logger.setLevel(logging.DEBUG)
    try:
        assert database.read("hostile", partition=hostile).count() == 0
        for value in HOSTILE:
            assert database.read("hostile", where={"day": value}).count() == 0
    finally:
        logger.removeHandler(sent)
        logger.setLevel(level)
    assert _count(database, "hostile") == 4_000  # every table intact
    sent = sent.texts
    assert any("IN (?" in text for text in sent)  # the values went as parameters ...
    for value in HOSTILE:
        assert not any(value in text for text in sent), value  # ... never as SQL text


def test_a_killed_writer_leaves_the_old_rows(server, ray_session, tmp_path) -> None:
    """The writer is killed (SIGKILL) after its DELETE ran, when its COPY INTO is about to:
    the transaction never commits and every old row of the slice is there."""
    database = _database(server)
    database.write(_orders(4_000), "killed")
    marker = tmp_path / "deleted"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        import pyarrow as pa
        import snowflake.connector
        from ray_assets.connectors.snowflake.writes import replace_slice

        class StopBeforeCopy:
            def __init__(self, cursor):
                self._cursor = cursor
            def execute(self, text, params=None):
                if text.startswith("COPY INTO"):
                    Path({str(marker)!r}).write_text("the delete ran")
                    time.sleep(600)
                return self._cursor.execute(text, params)
            def __getattr__(self, name):
                return getattr(self._cursor, name)

        class Connection:
            def __init__(self, connection):
                self._connection = connection
            def cursor(self):
                return StopBeforeCopy(self._connection.cursor())

        connection = snowflake.connector.connect(
            account="fakesnow", user="fake", password="snow", database="RAY", schema="ETL",
            host="{server["host"]}", port={server["port"]}, protocol="http", paramstyle="qmark")
        schema = pa.schema([("id", pa.int64()), ("day", pa.string())])
        batches = [pa.record_batch({{"id": [1], "day": ["2024-01-02"]}}, schema=schema)]
        replace_slice(Connection(connection), "killed", schema, batches,
                      slice_keys=[{{"day": "2024-01-02"}}], what="test", rows_per_file=10)
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert writer.poll() is None, "the writer died before its load"
            assert time.monotonic() < deadline, "the writer never reached its load"
            time.sleep(0.05)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert _count(database, "killed", 'WHERE "day" = ?', ["2024-01-02"]) == 1_000
    assert _count(database, "killed") == 4_000


def test_a_rerun_replaces_the_slice_instead_of_adding(server, ray_session) -> None:
    import ray.data

    database = _database(server)
    database.write(_orders(4_000), "rerun")
    new = ray.data.from_arrow(_orders(4_000, first_id=10_000)).filter(
        expr=ray.data.expressions.col("day") == "2024-01-03"
    )
    for _ in range(2):
        assert database.write(new, "rerun", partition=_slice("2024-01-03")) == 1_000
    assert _count(database, "rerun") == 4_000
    assert (
        _count(database, "rerun", 'WHERE "day" = ? AND "id" >= ?', ["2024-01-03", 10_000]) == 1_000
    )


def test_a_failed_load_rolls_back_the_delete(server, ray_session) -> None:
    """The COPY INTO fails inside the transaction (text into a NUMBER column): the DELETE
    that ran before it is rolled back."""
    database = _database(server)
    database.write(_orders(4_000), "failed_load")
    bad = _orders(1_000).filter(pc.field("day") == "2024-01-02")
    bad = bad.set_column(2, "amount", pa.array(["not a number"] * bad.num_rows))
    with pytest.raises(WarehouseError, match="nothing was written") as raised:
        database.write(bad, "failed_load", partition=_slice("2024-01-02"))
    assert "table failed_load for asset 'orders', partition '2024-01-02'" in str(raised.value)
    assert _count(database, "failed_load") == 4_000


def test_rows_outside_the_slice_are_refused_and_nothing_changes(server, ray_session) -> None:
    database = _database(server)
    database.write(_orders(4_000), "stray")
    with pytest.raises(StrayPartitionValuesError, match="outside the run's partitions"):
        database.write(_orders(4_000, first_id=50_000), "stray", partition=_slice("2024-01-01"))
    assert _count(database, "stray") == 4_000
    assert _count(database, "stray", 'WHERE "id" >= ?', [50_000]) == 0


def test_a_type_snowflake_cannot_hold_is_refused_before_anything_is_created(
    server, ray_session
) -> None:
    database = _database(server)
    nested = pa.table({"id": [1, 2], "tags": [[1, 2], [3]]})
    with pytest.raises(UnstorableValueError, match="table nested: column 'tags' of type list<el"):
        database.write(nested, "nested")
    assert not database.has_table("nested")


def test_bad_input_is_a_clear_error_that_names_the_resource(server, ray_session) -> None:
    database = _database(server)
    with pytest.raises(WarehouseError) as missing:
        database.read("no_such_table")
    assert "SnowflakeDatabase(fakesnow/RAY.ETL) table no_such_table" in str(missing.value)
    assert "does not exist" in str(missing.value).lower()
    closed = _database(server, port=_closed_port(), password="canary-snowflake-password")
    with pytest.raises(WarehouseError) as unreachable:
        closed.read("orders")
    assert "cannot connect as fake" in str(unreachable.value)
    assert "canary-snowflake-password" not in str(unreachable.value)


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_canary_secret_appears_nowhere(server, ray_session, capfd) -> None:
    """The password, given through dg.EnvVar, is not in the event log, the metadata, the run
    config, the captured output, or the error of a failed step."""
    canary = "canary-8d41f0e2-snowflake"
    os.environ["RAY_ASSETS_TEST_SNOWFLAKE_PASSWORD"] = canary
    try:

        @dg.asset(partitions_def=DAYS)
        def exported(context, snowflake: SnowflakeDatabase) -> dg.MaterializeResult:
            rows = snowflake.write(
                _orders(400).filter(pc.field("day") == context.partition_key),
                "exported",
                partition=_slice(context.partition_key),
            )
            return dg.MaterializeResult(metadata={"rows": rows})

        @dg.asset
        def broken(snowflake: SnowflakeDatabase) -> None:
            snowflake.read("missing_table")

        instance = dg.DagsterInstance.ephemeral()
        password = dg.EnvVar("RAY_ASSETS_TEST_SNOWFLAKE_PASSWORD")
        resources = {"snowflake": _database(server, password=password)}
        good = dg.materialize(
            [exported], partition_key="2024-01-02", resources=resources, instance=instance
        )
        bad = dg.materialize([broken], resources=resources, instance=instance, raise_on_error=False)
    finally:
        del os.environ["RAY_ASSETS_TEST_SNOWFLAKE_PASSWORD"]
    assert good.success and not bad.success
    texts = [str(record) for run in (good, bad) for record in instance.all_logs(run.run_id)]
    texts += [str(instance.get_run_by_id(run.run_id).run_config) for run in (good, bad)]
    captured = capfd.readouterr()
    texts += [captured.out, captured.err]
    failure = str(bad.get_step_failure_events()[0].event_specific_data.error)
    assert "missing_table" in failure
    for text in [*texts, failure]:
        assert canary not in text
