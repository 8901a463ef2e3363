"""ParquetStore and ParquetIOManager: plain Hive Parquet, published partition by partition.

The same suite runs on a local folder and on a real S3-compatible server on loopback (moto, in
its own process): range writes, reruns, strays and schema drift, a writer killed before it
publishes, concurrent writer processes, a reader running while a writer replaces a partition,
and the cleanup that reclaims replaced and orphaned files.
"""

import datetime as dt
import json
import subprocess
import sys
import textwrap
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from ray_assets import (
    ParquetIOManager,
    ParquetStore,
    PartitionSlice,
    RayAssetsError,
    RayResource,
    SchemaMismatchError,
    StrayPartitionValuesError,
    checks,
    ray_asset,
)
from ray_assets.storage.filesystem import resolve_filesystem
from ray_assets.storage.parquet_manifest import ManifestFile, ManifestLog, PartitionManifest
from tests.conftest import failure_text
from tests.lakes import DAILY, DAYS, Lake, daily, orders
from tests.race_writers import ROWS_BY_WRITER, day_of, race

REPO = Path(__file__).resolve().parents[1]
LATER = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
"""A time past every retention window: what `cleanup` judges ages by in these tests."""


def parquet(lake: Lake, name: str = "orders", **kwargs) -> ParquetStore:
    return ParquetStore(lake.uri(name), storage_options=lake.storage_options, **kwargs)


def rows_by_day(store: ParquetStore) -> dict[str, int]:
    """Rows per partition as the live manifests say (no data scan)."""
    return {m.partition_values["order_date"]: m.rows for m in store.manifests() if m.rows}


def data_files_on_disk(store: ParquetStore) -> set[str]:
    """Every data file under the table root, live or not, relative to it."""
    import pyarrow.fs as pafs

    filesystem, root = resolve_filesystem(store.table_uri, store.storage_options)
    infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {
        info.path[len(root) + 1 :]
        for info in infos
        if info.type == pafs.FileType.File and info.path.endswith(".parquet")
    }


def hive_read(store: ParquetStore) -> pa.Table:
    """The table as any engine reads a Hive-partitioned folder (no manifests involved)."""
    filesystem, root = resolve_filesystem(store.table_uri, store.storage_options)
    dataset = pads.dataset(root, filesystem=filesystem, format="parquet", partitioning="hive")
    return dataset.to_table()


def test_range_write_rewrite_rerun_and_cleanup(ray_session, lake) -> None:
    store = parquet(lake)
    first = store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    assert first.committed and first.storage_kind == "parquet"
    assert rows_by_day(store) == dict.fromkeys(DAYS, 50) and first.table_row_count == 150
    files_of_run_1 = data_files_on_disk(store)
    again = store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    assert not again.committed and again.partitions == first.partitions
    assert data_files_on_disk(store) == files_of_run_1  # the same run changed nothing

    second = store.write(orders(["2024-01-02"], 7), daily(["2024-01-02"]), write_id="run-2")
    assert second.table_version == 2  # the partition's second publication
    assert rows_by_day(store) == {"2024-01-01": 50, "2024-01-02": 7, "2024-01-03": 50}
    back = store.read(daily(["2024-01-02"]), ["order_id"]).take_all()
    assert sorted(row["order_id"] for row in back) == list(range(7))
    # the replaced files were not touched: a reader of the old manifest can still read them
    assert files_of_run_1 <= data_files_on_disk(store)
    replaced = {f for f in files_of_run_1 if "2024-01-02" in f}

    kept = store.cleanup()  # now: the files were replaced moments ago, so they stay
    assert kept.removed_files == 0 and kept.kept_recent == len(replaced)
    cleaned = store.cleanup(now=LATER)
    assert sorted(cleaned.removed_paths) == sorted(replaced)
    assert rows_by_day(store) == {"2024-01-01": 50, "2024-01-02": 7, "2024-01-03": 50}
    # what is left is plain Hive Parquet: any engine reads the exact table
    plain = hive_read(store)
    assert plain.num_rows == 107
    assert sorted(
        plain.filter(pa.compute.equal(plain["order_date"], "2024-01-02"))["order_id"].to_pylist()
    ) == list(range(7))


def test_strays_and_schema_drift_are_refused_and_leave_nothing(ray_session, lake) -> None:
    import ray.data

    store = parquet(lake)
    store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    before = data_files_on_disk(store)
    with pytest.raises(StrayPartitionValuesError, match="2024-01-03: 50 row"):
        store.write(orders(DAYS), daily(["2024-01-01", "2024-01-02"]))
    drifted = pa.table({"order_id": ["a"], "order_date": ["2024-01-01"], "amount": [1.0]})
    with pytest.raises(SchemaMismatchError, match="order_id: table has int64, data has string"):
        store.write(ray.data.from_arrow(drifted), daily(["2024-01-01"]))
    assert rows_by_day(store) == dict.fromkeys(DAYS, 50)
    assert data_files_on_disk(store) == before  # the refused writes' files were deleted


def test_a_writer_killed_before_it_publishes_leaves_the_old_partition_live(
    ray_session, lake
) -> None:
    store = parquet(lake)
    store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    live = data_files_on_disk(store)
    script = textwrap.dedent(
        f"""
        import os, sys, json
        sys.path.insert(0, {str(REPO)!r})
        import ray
        ray.init(address={ray_session!r}, log_to_driver=False)
        from ray_assets.storage.parquet_store import ParquetStore
        ParquetStore._publish = lambda *a, **k: os._exit(9)  # killed right there
        from tests.lakes import daily, orders
        options = json.loads({json.dumps(lake.storage_options)!r})
        store = ParquetStore({store.table_uri!r}, storage_options=options)
        store.write(orders(["2024-01-02"], 9), daily(["2024-01-02"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 9, done.stderr[-2000:]
    assert rows_by_day(store) == dict.fromkeys(DAYS, 50)
    assert store.read(daily(["2024-01-02"])).count() == 50
    orphans = data_files_on_disk(store) - live
    assert orphans  # the killed write's files, named by no manifest
    assert store.cleanup().removed_files == 0  # too young: the writer might still publish
    assert sorted(store.cleanup(now=LATER).removed_paths) == sorted(orphans)
    assert data_files_on_disk(store) == live


def test_cleanup_refuses_a_window_shorter_than_a_write_can_take(tmp_path) -> None:
    store = ParquetStore(str(tmp_path / "t"))
    with pytest.raises(ValueError, match="shorter than the safety window"):
        store.cleanup(older_than=dt.timedelta(seconds=30))


def read_through_manifests(store: ParquetStore, partition: PartitionSlice) -> pa.Table:
    """What `ParquetStore.read` reads (the files its manifests name), read on the driver so
    that a reader makes many reads while the writer runs."""
    import pyarrow.parquet as pq

    filesystem, _ = resolve_filesystem(store.table_uri, store.storage_options)
    files = [f.path for f in store.data_files(partition)]
    return pa.concat_tables(
        [pq.read_table(path, filesystem=filesystem, columns=["order_id"]) for path in files]
    )


def test_a_reader_during_rewrites_sees_whole_partitions_only(ray_session, tmp_path) -> None:
    """A writer process replaces one partition round after round, each round with a different
    row count and a `round` column; every read meanwhile must be exactly one round's rows."""
    store = ParquetStore(str(tmp_path / "orders"))
    day = ["2024-01-01"]
    store.write(orders(day, 10), daily(day), write_id="round-0")
    rounds = 4
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import ray
        ray.init(address={ray_session!r}, log_to_driver=False)
        from ray_assets.storage.parquet_store import ParquetStore
        from tests.lakes import daily, orders
        store = ParquetStore({store.table_uri!r})
        for index in range(1, {rounds} + 1):
            data = orders({day!r}, 10 + index, offset=1000 * index)
            store.write(data, daily({day!r}), write_id=f"round-{{index}}")
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    seen: dict[int, int] = defaultdict(int)
    while True:
        running = writer.poll() is None
        table = read_through_manifests(store, daily(day))
        generation = {order_id // 1000 for order_id in table["order_id"].to_pylist()}
        assert len(generation) == 1, f"a read mixed rounds {sorted(generation)}"
        (index,) = generation
        assert table.num_rows == 10 + index  # the whole round, nothing missing
        seen[index] += 1
        if not running:
            break
    assert writer.wait(timeout=60) == 0, writer.stderr.read()[-2000:]
    assert max(seen) == rounds  # the last read saw the last round
    assert len(seen) >= 2  # and some read ran while the writer was still replacing


def test_concurrent_writer_processes_publish_exactly_once(ray_session, s3, tmp_path) -> None:
    base = {"mode": "warn", "amount_type": {"a": "float64", "b": "float64"}, "store": "parquet"}
    on_s3 = {**base, "storage_options": s3.storage_options}
    scenarios = [
        {**base, "name": "own-local", "uri": str(tmp_path / "own"), "rounds": 2, "own_day": True},
        {**base, "name": "same-local", "uri": str(tmp_path / "same"), "rounds": 2},
        {**on_s3, "name": "own-s3", "uri": s3.uri("praces", "own"), "rounds": 2, "own_day": True},
        {**on_s3, "name": "same-s3", "uri": s3.uri("praces", "same"), "rounds": 2},
    ]
    outcomes = race(ray_session, scenarios)
    for scenario in scenarios:
        store = ParquetStore(scenario["uri"], storage_options=scenario.get("storage_options"))
        for by_writer in outcomes[scenario["name"]].values():
            assert {w: o["status"] for w, o in by_writer.items()} == {"a": "ok", "b": "ok"}
        counts = rows_by_day(store)
        if scenario.get("own_day"):
            assert counts == {
                day_of(2 * i + (w == "b")): ROWS_BY_WRITER[w] for i in range(2) for w in "ab"
            }
        else:
            for round_index in range(2):  # one writer's rows, never both (5 + 7)
                assert counts[day_of(round_index)] in ROWS_BY_WRITER.values()


# ---------------------------------------------------------------- the IO manager in Dagster
@ray_asset(
    partitions_def=DAILY,
    partition_column="order_date",
    kinds={"parquet"},
    io_manager_key="parquet_io_manager",
    checks=[checks.not_null("order_id")],
)
def parquet_orders(context: dg.AssetExecutionContext):
    import ray.data

    days = context.partition_keys
    table = pa.table(
        {
            "order_id": list(range(len(days) * 4)),
            "order_date": [day for day in days for _ in range(4)],
            "amount": [float(i) for i in range(len(days) * 4)],
        }
    )
    return ray.data.from_arrow(table)


@dg.asset(
    partitions_def=DAILY,
    ins={"parquet_orders": dg.AssetIn(metadata={"columns": ["amount"]})},
    metadata={"partition_expr": "order_date"},
    io_manager_key="parquet_io_manager",
)
def parquet_daily_total(parquet_orders: pa.Table) -> pa.Table:
    days = sorted(set(parquet_orders["order_date"].to_pylist()))
    total = pa.compute.sum(parquet_orders["amount"]).as_py()
    return pa.table({"order_date": days[:1], "total": [total]})


def test_parquet_io_manager_in_dagster(ray_session, lake) -> None:
    resources = {
        "ray": RayResource(address=ray_session),
        "parquet_io_manager": ParquetIOManager(
            root_uri=lake.root, storage_options=lake.storage_options
        ),
    }
    run = dg.materialize(
        [parquet_orders],
        resources=resources,
        tags={
            "dagster/asset_partition_range_start": DAYS[0],
            "dagster/asset_partition_range_end": DAYS[-1],
        },
        raise_on_error=False,
    )
    assert run.success, failure_text(run)
    materializations = run.asset_materializations_for_node("parquet_orders")
    assert {m.partition for m in materializations} == set(DAYS)
    assert {m.metadata["dagster/storage_kind"].value for m in materializations} == {"parquet"}
    assert materializations[-1].partition == DAYS[-1]  # the range's last day carries the summary
    assert materializations[-1].metadata["dagster/row_count"].value == 12
    assert {
        m.partition: m.metadata["dagster/partition_row_count"].value for m in materializations
    } == dict.fromkeys(DAYS, 4)
    checks_passed = [c.passed for c in run.get_asset_check_evaluations()]
    assert checks_passed and all(checks_passed)
    assert "parquet" in parquet_orders.specs_by_key[dg.AssetKey("parquet_orders")].kinds
    assert "deltalake" not in parquet_orders.specs_by_key[dg.AssetKey("parquet_orders")].kinds

    downstream = dg.materialize(
        [parquet_orders.to_source_asset(), parquet_daily_total],
        resources=resources,
        partition_key=DAYS[1],
        raise_on_error=False,
    )
    assert downstream.success, failure_text(downstream)
    store = ParquetStore(lake.uri("parquet_daily_total"), storage_options=lake.storage_options)
    totals = store.read(PartitionSlice.unpartitioned("t")).take_all()
    assert totals == [{"order_date": DAYS[1], "total": 4.0 + 5 + 6 + 7}]  # that day's rows only


# ---------------------------------------------------------------- manifests read whole
def manifest(version: int, files: int) -> PartitionManifest:
    """A manifest whose length grows with `files`: a read torn between two lengths is cut."""
    return PartitionManifest(
        partition_values={"order_date": "2024-01-01"},
        version=version,
        app_id=f"app-{version}",
        write_id=f"write-{version}",
        published_at=float(version),
        files=[ManifestFile(path=f"f{version}-{i}.parquet", rows=i, bytes=i) for i in range(files)],
    )


class TornFirstReads(pafs.FileSystemHandler):
    """A local filesystem whose first `torn` reads of a manifest return its first half: what
    pyarrow's HEAD + ranged GET returns when a put replaces the object in between."""

    def __init__(self, torn: int) -> None:
        self.local = pafs.LocalFileSystem()
        self.torn = torn
        self.reads = 0

    def open_input_stream(self, path):
        data = self.local.open_input_stream(path).read()
        if path.endswith(".json") and "/partitions/" in path:
            self.reads += 1
            if self.reads <= self.torn:
                data = data[: len(data) // 2]
        return pa.BufferReader(data)

    # everything else as the local filesystem does it
    def get_type_name(self):
        return "torn-first-reads"

    def normalize_path(self, path):
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise NotImplementedError

    def delete_file(self, path):
        self.local.delete_file(path)

    def move(self, src, dest):
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        self.local.copy_file(src, dest)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return self.local.open_output_stream(path)

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path)


@pytest.mark.parametrize("torn", [1, 3])
def test_a_torn_manifest_read_is_read_again_whole(tmp_path, torn) -> None:
    root = str(tmp_path / "t")
    ManifestLog(pafs.LocalFileSystem(), root).publish(("order_date",), manifest(2, 40))
    handler = TornFirstReads(torn)

    (read,) = ManifestLog(pafs.PyFileSystem(handler), root).read_all()

    assert read == manifest(2, 40)
    assert handler.reads == torn + 1


def test_a_manifest_that_stays_torn_fails_naming_it(tmp_path) -> None:
    root = str(tmp_path / "t")
    ManifestLog(pafs.LocalFileSystem(), root).publish(("order_date",), manifest(2, 40))

    with pytest.raises(
        RayAssetsError,
        match=r"document .*partitions/order_date%3D2024-01-01\.json could not be read whole",
    ):
        ManifestLog(pafs.PyFileSystem(TornFirstReads(torn=100)), root).read_all()


def test_manifest_reads_racing_puts_on_s3_see_whole_versions(s3) -> None:
    """Real S3 semantics (moto): a put replaces the object while readers read it."""
    filesystem, root = resolve_filesystem(s3.uri("torn", "t"), s3.storage_options)
    log = ManifestLog(filesystem, root)
    versions = [manifest(v, files=5 + 30 * (v % 2)) for v in range(1, 41)]  # short, long, ...
    log.publish(("order_date",), versions[0])
    seen: list[PartitionManifest] = []
    with ThreadPoolExecutor(max_workers=3) as pool:
        writer = pool.submit(lambda: [log.publish(("order_date",), m) for m in versions[1:]])
        readers = [
            pool.submit(lambda: [seen.extend(log.read_all()) for _ in range(60)]) for _ in range(2)
        ]
        for future in (writer, *readers):
            future.result()
    assert len(seen) == 120
    assert all(read in versions for read in seen)  # whole versions only, never a cut one
