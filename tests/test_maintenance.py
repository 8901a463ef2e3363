"""Table maintenance: orphans of killed writes reclaimed at once, running writes' files kept,
compaction and vacuum beside a live write, and the Dagster job that runs it all."""

import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from ray_assets import DeltaIOManager, DeltaStore, RayResource, ray_asset
from ray_assets.maintenance import maintain_table, reclaim_orphans, table_maintenance_job
from ray_assets.storage import delta_commit
from tests.conftest import failure_text
from tests.lakes import DAILY, DAYS, daily, orders

REPO = Path(__file__).resolve().parents[1]


def data_files(table: Path) -> set[str]:
    return {str(p.relative_to(table)) for p in table.rglob("part-*.parquet")}


def rows_by_day(store: DeltaStore) -> dict[str, int]:
    counts: dict[str, int] = {}
    for data_file in store.data_files(daily(DAYS)):
        day = data_file.partition_values["order_date"]
        counts[day] = counts.get(day, 0) + (data_file.num_rows or 0)
    return counts


def kill_a_write_before_its_commit(ray_session: str, table: Path, write_id: str) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        import ray
        ray.init(address={ray_session!r}, log_to_driver=False)
        from ray_assets.storage import delta_commit
        delta_commit.SliceCommitter.commit = lambda *a, **k: os._exit(9)  # killed right there
        from ray_assets import DeltaStore
        from tests.lakes import daily, orders
        DeltaStore({str(table)!r}).write(orders(["2024-01-01"], 30), daily(["2024-01-01"]),
                                          write_id={write_id!r})
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr[-2000:]


def test_orphans_go_at_once_while_a_running_writes_files_stay(ray_session, tmp_path) -> None:
    """A killed write's files are reclaimed as soon as its run is over; maintenance run in the
    middle of another write (between its files and its commit) keeps that write's files,
    compacts and vacuums beside it, and the write then commits exactly its rows."""
    table = tmp_path / "orders"
    store = DeltaStore(str(table))
    for index, day in enumerate(DAYS):  # one commit per day: many small files to compact
        store.write(orders([day], 50, offset=100 * index), daily([day]), write_id=f"day-{index}")
    live_before = data_files(table)
    kill_a_write_before_its_commit(ray_session, table, "killed-run")
    orphans = data_files(table) - live_before
    assert orphans  # the killed write's files, never committed

    seen: dict[str, object] = {}

    def maintain_mid_write(staged) -> None:  # noqa: ANN001 - the write's gate
        staged_files = {s.path for s in staged.files}
        seen["dry"] = maintain_table(store, lambda run: run == "killed-run", dry_run=True)
        assert data_files(table) >= orphans  # a dry run removes nothing
        seen["result"] = maintain_table(store, lambda run: run == "killed-run")
        assert staged_files <= data_files(table)  # the running write's files were kept

    result = store.write(
        orders(["2024-01-02"], 9), daily(["2024-01-02"]), write_id="live", gate=maintain_mid_write
    )
    maintained = seen["result"]
    assert sorted(maintained.orphans_removed) == sorted(orphans)
    assert sorted(seen["dry"].orphans_removed) == sorted(orphans)
    assert maintained.files_of_running_writes == result.files_written
    assert not orphans & data_files(table)
    assert result.committed and rows_by_day(store) == {
        "2024-01-01": 50,
        "2024-01-02": 9,
        "2024-01-03": 50,
    }
    back = sorted(row["order_id"] for row in store.read(daily(["2024-01-02"])).take_all())
    assert back == list(range(9))  # the live write's rows, not the compacted old ones


def test_a_vacuum_window_shorter_than_the_safety_window_is_refused(ray_session, tmp_path) -> None:
    store = DeltaStore(str(tmp_path / "t"))
    store.write(orders(DAYS[:1], 5), daily(DAYS[:1]))
    with pytest.raises(ValueError, match="shorter than the safety window"):
        maintain_table(store, lambda run: True, retention=dt.timedelta(hours=1))


@ray_asset(partitions_def=DAILY, partition_column="order_date")
def kept_orders(context: dg.AssetExecutionContext):
    return orders(list(context.partition_keys), 20)


def test_the_maintenance_job_reclaims_a_failed_runs_files(
    ray_session, tmp_path, monkeypatch
) -> None:
    """A run that failed at its commit leaves its files; the job, asking the instance, finds the
    run over and reclaims them, and records what it did on the asset."""
    instance = dg.DagsterInstance.ephemeral()
    resources = {
        "ray": RayResource(address=ray_session),
        "delta_io_manager": DeltaIOManager(root_uri=str(tmp_path)),
    }
    first = dg.materialize(
        [kept_orders], resources=resources, partition_key=DAYS[0], instance=instance
    )
    assert first.success
    table = tmp_path / "kept_orders"
    live = data_files(table)

    def lost_commit(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError("the machine lost its connection to the store")

    monkeypatch.setattr(delta_commit.SliceCommitter, "commit", lost_commit)
    failed = dg.materialize(
        [kept_orders],
        resources=resources,
        partition_key=DAYS[1],
        instance=instance,
        raise_on_error=False,
    )
    monkeypatch.undo()
    assert not failed.success and "lost its connection" in failure_text(failed)
    orphans = data_files(table) - live
    assert orphans

    job = table_maintenance_job([kept_orders])
    maintenance = job.execute_in_process(
        instance=instance, resources={"delta_io_manager": resources["delta_io_manager"]}
    )
    assert maintenance.success
    observed = [
        event.event_specific_data.asset_observation.metadata
        for event in maintenance.all_events
        if event.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    ]
    assert [m["maintenance/orphans_removed"].value for m in observed] == [len(orphans)]
    assert not orphans & data_files(table) and live <= data_files(table)
    # compaction rewrote the committed day into one file; the replaced ones wait for vacuum
    assert observed[0]["maintenance/files_after"].value == 1
    store = DeltaStore(str(table))
    assert store.read(daily(DAYS[:1])).count() == 20
    assert not list((table / "_ray_assets" / "writes").glob("*"))  # no write left to decide


def test_a_failed_first_write_is_reclaimed_though_no_table_exists(
    ray_session, tmp_path, monkeypatch
) -> None:
    from ray_assets.maintenance import reclaim_orphans

    def lost_commit(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError("the machine lost its connection to the store")

    table = tmp_path / "orders"
    store = DeltaStore(str(table))
    monkeypatch.setattr(delta_commit.SliceCommitter, "commit", lost_commit)
    with pytest.raises(OSError, match="lost its connection"):
        store.write(orders(DAYS, 10), daily(DAYS), write_id="first")
    monkeypatch.undo()
    left = data_files(table)
    assert left and store.version() is None
    assert reclaim_orphans(store, lambda run: False)[0] == []  # a live write: kept
    removed, _, _ = reclaim_orphans(store, lambda run: run == "first")
    assert sorted(removed) == sorted(left) and not data_files(table)


def test_files_a_retried_task_abandoned_go_once_old_while_replaced_files_stay(
    ray_session, tmp_path
) -> None:
    """A file named after a committed write that no commit ever added (what a task killed
    mid-write leaves when its retry writes other files) is reclaimed once older than the
    window; a fresh one is kept (its write could have started after the records were read);
    a file that a commit added and a later rewrite removed stays for vacuum and time travel."""
    import os
    import re
    import shutil
    import time

    table = tmp_path / "orders"
    store = DeltaStore(str(table))
    store.write(orders(["2024-01-01"], 50), daily(["2024-01-01"]), write_id="first")
    replaced = data_files(table)  # added at version 0, removed at version 1
    store.write(orders(["2024-01-01"], 40), daily(["2024-01-01"]), write_id="rewrite")
    live = data_files(table) - replaced
    current = sorted(live)[0]
    old_stray, new_stray = (
        re.sub(r"-\d{5}-\d{5}\.parquet$", f"-00099-0000{n}.parquet", current) for n in (7, 8)
    )
    for stray in (old_stray, new_stray):
        shutil.copyfile(table / current, table / stray)
    two_hours_ago = time.time() - 7200
    for path in (old_stray, *replaced):
        os.utime(table / path, (two_hours_ago, two_hours_ago))

    removed, _, running = reclaim_orphans(store, lambda _run: True)
    assert removed == [old_stray] and running == 0
    assert data_files(table) == replaced | live | {new_stray}
    assert store.read(daily(["2024-01-01"]), version=0).count() == 50  # time travel intact
    assert store.read(daily(["2024-01-01"])).count() == 40
