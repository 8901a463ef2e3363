"""Faults of the matrix (F08, F09, F17) injected for real, with the invariants checked after:
the table readable at its committed version, exact content, nothing outside the table root."""

import shutil
import subprocess
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_assets import (
    DeltaIOManager,
    DeltaStore,
    PartitionKeyError,
    PartitionSlice,
    PipelineFailedError,
    RayResource,
    ray_asset,
)
from ray_assets.maintenance import reclaim_orphans
from tests.conftest import bare_ray_driver, failure_text
from tests.lakes import daily


@pytest.fixture
def small_disk(tmp_path: Path):
    """An 8 MiB tmpfs: a disk that fills up for real."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_f08_a_full_disk_fails_the_write_cleanly_and_a_retry_succeeds(
    ray_session, small_disk
) -> None:
    import ray.data

    store = DeltaStore(str(small_disk / "orders"))

    def rows(day: str, count: int):  # incompressible text: ~0.5 KB a row on disk
        def noise(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            rng = np.random.default_rng(int(batch["id"][0]))
            return {
                "order_id": batch["id"],
                "order_date": np.full(len(batch["id"]), day, dtype=object),
                "blob": np.array([rng.bytes(256).hex() for _ in batch["id"]], dtype=object),
            }

        # one block: when the write fails, no other task is still filling the disk
        return ray.data.range(count, override_num_blocks=1).map_batches(noise)

    store.write(rows("2024-01-01", 100), daily(["2024-01-01"]), write_id="small")
    with pytest.raises(PipelineFailedError, match="No space left on device") as error:
        store.write(rows("2024-01-02", 40_000), daily(["2024-01-02"]), write_id="too-big")
    assert "2024-01-02" in str(error.value)  # names the partition
    assert store.version() == 0 and store.read(daily(["2024-01-01"])).count() == 100
    removed, _, _ = reclaim_orphans(store, lambda write: write == "too-big")
    assert removed  # the failed write's files, reclaimed: the space is back
    store.write(rows("2024-01-02", 100), daily(["2024-01-02"]), write_id="retry")
    assert store.version() == 1 and store.read(daily(["2024-01-02"])).count() == 100


def test_f09_a_corrupt_source_file_fails_before_any_commit_naming_it(ray_session, tmp_path) -> None:
    from ray_assets import read_parquet_files

    source = tmp_path / "source"
    source.mkdir()
    for index in range(3):
        table = pa.table(
            {
                "order_id": list(range(index * 10, index * 10 + 10)),
                "order_date": ["2024-01-01"] * 10,
            }
        )
        pq.write_table(table, source / f"part-{index}.parquet")
    broken = source / "part-1.parquet"
    broken.write_bytes(broken.read_bytes()[:-40])  # truncated: the footer is gone
    store = DeltaStore(str(tmp_path / "orders"))
    with pytest.raises(Exception, match="part-1.parquet") as error:
        store.write(read_parquet_files(str(source)), daily(["2024-01-01"]), write_id="bad")
    assert "2024-01-01" in str(error.value) or "part-1.parquet" in str(error.value)
    assert store.version() is None  # nothing was committed: no table at all


HOSTILE_KEYS = [
    "../../etc",
    "/etc/passwd",
    "a/b",
    "..",
    "%2e%2e",
    "\\..\\windows",
    "\u2024\u2024/etc",  # one-dot leaders that look like ".."
    "x' OR '1'='1",
]

tenants = dg.DynamicPartitionsDefinition(name="tenants")


@ray_asset(partitions_def=tenants, partition_column="tenant")
def tenant_rows(context: dg.AssetExecutionContext):
    import ray.data

    return ray.data.from_arrow(pa.table({"tenant": [context.partition_key], "v": [1]}))


def test_f17_hostile_dynamic_keys_and_run_tags_stay_inside_the_table(ray_session, tmp_path) -> None:
    root = tmp_path / "root"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tenants", HOSTILE_KEYS)
    resources = {
        "ray": RayResource(address=ray_session),
        "delta_io_manager": DeltaIOManager(root_uri=str(root)),
    }
    for key in HOSTILE_KEYS:
        run = dg.materialize(
            [tenant_rows],
            resources=resources,
            partition_key=key,
            instance=instance,
            raise_on_error=False,
        )
        assert run.success, failure_text(run)
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and root not in p.parents]
    assert outside == []
    table = root / "tenant_rows"
    assert all(table in p.parents for p in root.rglob("*.parquet"))
    store = DeltaStore(str(table))
    for key in HOSTILE_KEYS:  # each key reads back as itself, from its own directory
        one = PartitionSlice.from_keys(
            tenants, [key], "tenant", asset_key="tenant_rows", dynamic_partitions_store=instance
        )
        assert store.read(one).take_all() == [{"tenant": key, "v": 1}]

    # keys that are no partition of the asset, or that hold a NUL, given as run tags, and
    # dynamic keys with control characters: all refused before any IO
    instance.add_dynamic_partitions("tenants", CONTROL_KEYS)
    before = sorted(p.name for p in table.rglob("*"))
    for key in ["../../../outside", "nul\x00tag", "line\nbreak", "k" * 300, *CONTROL_KEYS]:
        bad = dg.materialize(
            [tenant_rows],
            resources=resources,
            instance=instance,
            raise_on_error=False,
            tags={"dagster/partition": key},
        )
        assert not bad.success
        message = failure_text(bad)
        assert "partition key" in message, message  # Dagster's refusal, or ours:
        if key in CONTROL_KEYS:
            assert "control character" in message, message
    assert sorted(p.name for p in table.rglob("*")) == before
    assert not (tmp_path / "outside").exists()


# Dagster itself refuses NUL, newlines, tabs and a few more in a partitions definition
CONTROL_KEYS = ["esc\x1b[2J", "soh\x01", "del\x7f"]


def test_f17_keys_with_control_characters_are_refused_before_any_io(ray_session, tmp_path) -> None:
    import ray.data

    with pytest.raises(dg.DagsterInvalidDefinitionError, match="invalid substrings"):
        dg.StaticPartitionsDefinition(["nul\x00key", "line\nbreak"])
    static = dg.StaticPartitionsDefinition(CONTROL_KEYS)
    table = tmp_path / "t"
    for key in CONTROL_KEYS:
        with pytest.raises(PartitionKeyError, match="control character U\\+00"):
            DeltaStore(str(table)).write(
                ray.data.from_arrow(pa.table({"k": [key]})),
                PartitionSlice.from_keys(static, [key], "k", asset_key="t"),
            )
    assert not table.exists()


def test_f17_a_key_too_long_for_a_file_name_is_refused_before_any_io(ray_session, tmp_path) -> None:
    import ray.data

    long_key = "k" * 300
    static = dg.StaticPartitionsDefinition([long_key])
    table = tmp_path / "t"
    with pytest.raises(PartitionKeyError, match="300 characters"):
        DeltaStore(str(table)).write(
            ray.data.from_arrow(pa.table({"k": [long_key]})),
            PartitionSlice.from_keys(static, [long_key], "k", asset_key="t"),
        )
    assert not table.exists() or not list(table.rglob("*.parquet"))
    shutil.rmtree(table, ignore_errors=True)


def test_f21_a_source_connection_dropped_mid_read_commits_nothing_and_a_rerun_is_exact(
    postgres, ray_session, tmp_path
) -> None:
    """The server ends the reading connection (`pg_terminate_backend`) while the source query
    streams its rows: the write fails naming the partition and the cause, without the password;
    the table stays at its version; the rerun commits every row once."""
    import threading

    import ray.data
    from postgres_server import PASSWORD

    from ray_assets.connectors.sql import SqlDatabase
    from ray_assets.errors import SqlDatabaseError

    rows = 200_000
    ids = np.arange(rows, dtype=np.int64)
    database = SqlDatabase(url=postgres.url)
    database.write(
        pa.table({"order_id": ids, "order_date": ["2024-01-02"] * rows, "amount": ids * 0.5}),
        "f21_orders",
    )
    database.write(pa.table({"stall": [True]}), "f21_switch")
    # with the switch on, the query stalls for a minute after its first 1000 rows
    slow_query = (
        "SELECT o.* FROM f21_orders o CROSS JOIN f21_switch s "
        "WHERE CASE WHEN s.stall AND o.order_id = 1000 THEN pg_sleep(60) IS NOT NULL "
        "ELSE TRUE END"
    )
    store = DeltaStore(str(tmp_path / "orders"))
    kept = pa.table({"order_id": [-1], "order_date": ["2024-01-01"], "amount": [0.0]})
    store.write(ray.data.from_arrow(kept), daily(["2024-01-01"]), write_id="kept")
    day = daily(["2024-01-02"])
    ended: list[int] = []

    def end_the_reader() -> None:
        """Wait for the stalled read, then have the server end its connection."""
        from ray_assets.connectors.sql.sessions import open_session

        while not ended:
            with open_session(postgres.url) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity "
                    "WHERE state = 'active' AND wait_event = 'PgSleep' "
                    "AND query LIKE '%f21_orders%'"
                )
                ended.extend(admin.fetch_all()["ended"].to_pylist())

    killer = threading.Thread(target=end_the_reader, daemon=True)
    killer.start()
    with pytest.raises(SqlDatabaseError) as error:
        store.write(database.read(query=slow_query, partition=day), day, write_id="dropped")
    killer.join(timeout=30)
    assert ended == [True]
    message = str(error.value)
    assert "2024-01-02" in message and "query" in message and "shard 1 of 1" in message, message
    assert "terminating connection" in message, message
    assert PASSWORD not in message
    assert store.version() == 0  # nothing committed: the kept day only
    assert store.read(daily(["2024-01-01"])).count() == 1

    from ray_assets.connectors.sql.sessions import open_session

    with open_session(postgres.url) as session:
        session.execute("UPDATE f21_switch SET stall = FALSE")
        session.commit()
    store.write(database.read(query=slow_query, partition=day), day, write_id="rerun")
    assert store.version() == 1
    order_ids = pa.concat_tables(ray.get(store.read(day).to_arrow_refs()))["order_id"]
    assert len(order_ids) == rows and len(pa.compute.unique(order_ids)) == rows


def test_f20_the_embedded_ray_listens_on_loopback_only_and_wants_its_token(ray_session) -> None:
    """The session's Ray is the embedded one `RayResource` starts: none of its servers is
    reachable from another machine, and a driver without the token (or with a wrong one) is
    refused by the GCS."""

    import psutil

    me = psutil.Process()
    listening = {
        connection.laddr.ip
        for process in [me, *me.children(recursive=True)]
        for connection in process.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    }
    assert listening and listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening

    def driver(env: dict[str, str]):  # noqa: ANN202 - a subprocess.CompletedProcess
        return bare_ray_driver(ray_session, env)

    for refused in (
        driver({"RAY_AUTH_MODE": "disabled"}),
        driver({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}),
    ):
        assert refused.returncode != 0
        assert "Authentication token is missing or incorrect" in refused.stderr, refused.stderr
    allowed = driver({})
    assert allowed.returncode == 0, allowed.stderr[-3000:]


@pytest.mark.heavy
def test_f03_a_node_lost_mid_write_ends_in_an_exact_table_or_a_clean_failure(tmp_path) -> None:
    """A real two-node Ray cluster on this machine (`tests/node_loss.py`, in its own process):
    the worker node is removed while it runs blocks of the write. Ray retries those tasks on
    the head; the write commits once with every row once, or fails and commits nothing. What
    the lost node's tasks left behind is reclaimed by maintenance."""
    import json
    import subprocess
    import sys

    markers = tmp_path / "markers"
    markers.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).parent / "node_loss.py"),
            str(tmp_path / "t"),
            str(markers),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["blocks_started_on_the_lost_node"] >= 1 and outcome["nodes_alive"] == 1
    if outcome["ok"]:
        assert outcome["table_version"] == 0
        assert outcome["rows"] == outcome["unique_ids"] == outcome["expected_rows"]
    else:
        assert outcome["table_version"] is None, outcome
        assert "2024-01-01" in outcome["error"], outcome
    assert outcome["data_files_after_maintenance"] == outcome["data_files_in_the_log"], outcome
