"""The automated paths under the real `dagster-daemon`: the landing sensor's ticks and a backfill.

The daemon loads the reference `workspace.yaml` from a temporary `DAGSTER_HOME` configured by the
project's `dagster.yaml`, and launches each run in a process of its own (Dagster's default run
launcher), exactly as in production. The runs join the test session's Ray (the `cluster`
resources), so they start in a second instead of starting Ray each. The test drives the daemon
only through files, Dagster's CLI and the instance, and waits by polling the instance.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tests.conftest import dagster_cli, delta_log_rows, delta_version
from tests.dagster_services import REPO, location_environment, start_service, stop_service
from tests.local_servers import Webhook
from tests.test_landing import drop

ROWS_PER_DAY = 200


def wait_for(
    condition: Callable[[], Any],
    what: str,
    timeout_s: float = 240.0,
    daemon: dict[str, Any] | None = None,
) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` after the timeout,
    with what the instance, the pool, Ray and the daemon were doing when `daemon` is given."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    state = "" if daemon is None else "\n" + daemon_state(daemon)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{state}")


def daemon_state(daemon: dict[str, Any]) -> str:
    """The recent runs with their last events, the backfills, the `ray` pool's slots, Ray's free
    resources, worker processes and log warnings, and the daemon log's: what a timeout needs to
    be diagnosed when the suite runs where nobody can look."""
    lines = []
    try:
        with instance_of(daemon) as instance:
            for run in instance.get_runs(limit=25):
                tags = {k.split("/")[-1]: v for k, v in run.tags.items() if "partition" in k}
                parent = run.tags.get("dagster/parent_run_id", "")[:8]
                lines.append(f"run {run.run_id[:8]} {run.status.value} {tags} parent={parent}")
                if not run.is_finished:
                    for entry in instance.all_logs(run.run_id)[-4:]:
                        message = (entry.user_message or "").replace("\n", " ")[:160]
                        lines.append(f"    {entry.dagster_event_type}: {message}")
            for backfill in instance.get_backfills():
                lines.append(f"backfill {backfill.backfill_id} {backfill.status.value}")
            pool = instance.event_log_storage.get_concurrency_info("ray")
            lines.append(
                f"pool ray: {pool.active_slot_count}/{pool.slot_count} claimed by "
                f"{sorted(r[:8] for r in pool.active_run_ids)}, {pool.pending_step_count} pending"
            )
    except Exception as error:  # the diagnosis must not hide the timeout
        lines.append(f"instance state unavailable: {error!r}")
    try:
        import psutil
        import ray

        workers: dict[str, int] = {}
        for process in psutil.process_iter(["cmdline"]):
            title = " ".join(process.info["cmdline"] or [])
            if title.startswith("ray::"):
                workers[title[:60]] = workers.get(title[:60], 0) + 1
        lines.append(f"ray available {ray.available_resources()} of {ray.cluster_resources()}")
        lines.append(f"ray worker processes: {workers}")
        logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
        for name in ("raylet.out", "gcs_server.out"):
            text = (logs / name).read_text(errors="replace").splitlines()
            problems = [line[:300] for line in text if re.search(r"^\[[^]]* [WE] ", line)]
            lines += [f"{name} errors and warnings (last 10):", *problems[-10:]]
    except Exception as error:  # the diagnosis must not hide the timeout
        lines.append(f"ray state unavailable: {error!r}")
    try:
        log = re.sub(r"\x1b\[[0-9;]*m", "", daemon["log"].read_text(errors="replace"))
    except OSError as error:
        log = f"daemon log unavailable: {error!r}"
    errors = [
        line[:300] for line in log.splitlines() if re.search(r"ERROR|Error|Exception|WARN", line)
    ]
    lines += ["daemon log errors and warnings (last 25):", *errors[-25:]]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def daemon(ray_session: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running `dagster-daemon` on a fresh instance; yields its environment and folders, and
    the loopback webhook the location's failure alerts go to."""
    root = tmp_path_factory.mktemp("daemon")
    webhook = Webhook()
    home = root / "home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        f"  - python_module: {{module_name: definitions, working_directory: '{REPO}'}}\n"
        "  - python_module: {module_name: tests.backfill_location, "
        f"working_directory: '{REPO}', location_name: backfill}}\n"
    )
    environment = {
        **location_environment(home, root, ray_session, ROWS_PER_DAY),
        "RAY_ASSETS_DAILY_CRON": "* * * * *",  # the schedule test needs a tick within a minute
        "RAY_ASSETS_ALERT_WEBHOOK_URL": webhook.url,  # the failure alerts of the location
    }
    from definitions.crm import Crm
    from definitions.sources import OrderSource
    from ray_assets.connectors.sql import SqlDatabase

    # the CRM's own data: the cluster resources read it and never fill it
    Crm(database=SqlDatabase(url=environment["RAY_ASSETS_CRM_URL"])).seed(OrderSource())
    with dg.DagsterInstance.from_config(str(home)):
        pass  # create the instance's storage now: the daemon and the CLI would race to create it
    log = (root / "daemon.log").open("a")

    def start_daemon() -> subprocess.Popen:
        return start_service(["dagster-daemon", "run", "-w", str(workspace)], environment, log)

    state: dict[str, Any] = {"process": start_daemon(), "start": start_daemon}
    try:
        location = ["-w", str(workspace), "-l", "definitions"]
        dagster(["sensor", "start", "landing_sensor", *location], environment)
        state.update(
            env=environment,
            root=root,
            home=home,
            log=root / "daemon.log",
            location=location,
            webhook=webhook,
        )
        yield state
    finally:
        stop_service(state["process"])
        log.close()
        webhook.close()


def instance_of(daemon: dict[str, Any]) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(daemon["home"]))


def finished_runs(
    instance: dg.DagsterInstance, tag: str, value: str, count: int = 1
) -> list[dg.DagsterRun]:
    """The runs tagged `tag=value` once there are `count` and all have finished; else []."""
    runs = [r for r in instance.get_runs() if r.tags.get(tag) == value]
    return runs if len(runs) >= count and all(r.is_finished for r in runs) else []


def dagster(arguments: list[str], environment: dict[str, str]) -> None:
    """Run a `dagster` command that must succeed."""
    done = dagster_cli(arguments, environment)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_landing_sensor_tick_materializes_exactly_the_landed_days(daemon) -> None:
    landing = daemon["root"] / "landing"
    drop(landing, "2024-02-02", "export-1", 3)
    drop(landing, "2024-02-02", "export-2", 4)
    drop(landing, "2024-02-05", "export-1", 6)
    with instance_of(daemon) as instance:
        runs = wait_for(
            lambda: finished_runs(instance, "dagster/sensor_name", "landing_sensor", count=2),
            "the landing sensor's two runs",
            daemon=daemon,
        )
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}, daemon["log"].read_text()[
            -3000:
        ]
        assert sorted(r.tags["dagster/partition"] for r in runs) == ["2024-02-02", "2024-02-05"]
        assert instance.get_materialized_partitions(dg.AssetKey("landed_orders")) == {
            "2024-02-02",
            "2024-02-05",
        }
    table = daemon["root"] / "tables" / "landed_orders"
    assert delta_log_rows(table) == {"2024-02-02": 7, "2024-02-05": 6}


def launch_backfill(
    instance: dg.DagsterInstance,
    backfill_id: str,
    defs: dg.Definitions,
    partitions: list[str],
    assets: list[str],
) -> None:
    """Submit an asset backfill as the UI does; the daemon's backfill loop picks it up. Dagster
    has no public API for it, so this one test helper uses the internal `PartitionBackfill`."""
    from dagster._core.execution.backfill import PartitionBackfill

    instance.add_backfill(
        PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id,
            asset_graph=defs.resolve_asset_graph(),
            partition_names=partitions,
            asset_selection=[dg.AssetKey(asset) for asset in assets],
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=None,
            description=None,
            run_config=None,
        )
    )


@pytest.mark.slow
def test_backfill_launched_in_the_daemon_is_one_run_per_range(daemon) -> None:
    from definitions import defs

    days = ["2024-03-01", "2024-03-02", "2024-03-03"]
    with instance_of(daemon) as instance:
        launch_backfill(instance, "orders3", defs, days, ["raw_orders", "clean_orders"])
        runs = wait_for(
            lambda: finished_runs(instance, "dagster/backfill", "orders3"),
            "the backfill's run",
            daemon=daemon,
        )
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert runs[0].tags["dagster/asset_partition_range_start"] == days[0]
        assert runs[0].tags["dagster/asset_partition_range_end"] == days[-1]
        for asset in ("raw_orders", "clean_orders"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(days)
    tables = daemon["root"] / "tables"
    assert delta_log_rows(tables / "raw_orders") == dict.fromkeys(days, ROWS_PER_DAY)
    assert delta_version(tables / "raw_orders") == 0 == delta_version(tables / "clean_orders")


@pytest.mark.slow
def test_downstream_days_follow_their_upstream_under_the_daemon(daemon) -> None:
    """`AutomationCondition.eager()` on the downstream daily assets, evaluated by the daemon's
    `follow_upstream` sensor: materializing the latest day of `raw_orders` brings its
    downstream assets' same day along, without anyone launching them."""
    from definitions.assets import daily

    latest = daily.get_last_partition_key()
    select = ["asset", "materialize", "-m", "definitions", "--select"]
    dagster([*select, "customers"], daemon["env"])
    dagster([*select, "raw_orders", "--partition", latest], daemon["env"])
    downstream = ("clean_orders", "orders_enriched", "daily_region_revenue")
    with instance_of(daemon) as instance:
        wait_for(
            lambda: all(
                latest in instance.get_materialized_partitions(dg.AssetKey(asset))
                for asset in downstream
            ),
            f"the automation sensor to materialize {downstream} for {latest}",
            daemon=daemon,
        )
        automated = wait_for(
            lambda: finished_runs(instance, "dagster/sensor_name", "follow_upstream"),
            "the automation runs to finish",
            daemon=daemon,
        )
        assert {(r.run_id, r.status) for r in automated} == {
            (r.run_id, dg.DagsterRunStatus.SUCCESS) for r in automated
        }, daemon["log"].read_text()[-3000:]
    tables = daemon["root"] / "tables"
    assert set(delta_log_rows(tables / "daily_region_revenue")) == {latest}


@pytest.mark.slow
@pytest.mark.heavy
def test_the_daily_schedule_ticks_the_latest_day_under_the_daemon(daemon) -> None:
    """The reference `daily_orders_schedule` (every minute here, `RAY_ASSETS_DAILY_CRON`) is
    ticked by the daemon's scheduler: one run of the latest finished day through every daily
    asset, whose tables then hold that day once."""
    from definitions.assets import daily

    latest = daily.get_last_partition_key()
    with instance_of(daemon) as instance:  # the daily job joins the customer dimension
        has_customers = instance.get_latest_materialization_event(dg.AssetKey("customers"))
    if has_customers is None:
        select = ["asset", "materialize", "-m", "definitions", "--select", "customers"]
        dagster(select, daemon["env"])
    dagster(["schedule", "start", "daily_orders_schedule", *daemon["location"]], daemon["env"])
    try:
        with instance_of(daemon) as instance:
            runs = wait_for(
                lambda: finished_runs(instance, "dagster/schedule_name", "daily_orders_schedule"),
                "the schedule's first tick and its run",
                timeout_s=300,
                daemon=daemon,
            )
    finally:
        dagster(["schedule", "stop", "daily_orders_schedule", *daemon["location"]], daemon["env"])
    assert [(r.status, r.tags["dagster/partition"]) for r in runs] == [
        (dg.DagsterRunStatus.SUCCESS, latest)
    ], daemon["log"].read_text()[-3000:]
    with instance_of(daemon) as instance:
        for asset in ("raw_orders", "clean_orders", "orders_enriched", "daily_region_revenue"):
            assert latest in instance.get_materialized_partitions(dg.AssetKey(asset))
    assert delta_log_rows(daemon["root"] / "tables" / "raw_orders")[latest] == ROWS_PER_DAY


def step_intervals(instance: dg.DagsterInstance, run_ids: list[str]) -> list[tuple[float, float]]:
    """(start, end) of every step that finished, from the runs' event logs."""
    types = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
    }
    intervals = []
    for run_id in run_ids:
        started: dict[str, float] = {}
        for entry in instance.all_logs(run_id, of_type=types):
            if entry.dagster_event_type == dg.DagsterEventType.STEP_START:
                started[entry.step_key] = entry.timestamp
            elif entry.step_key in started:
                intervals.append((started.pop(entry.step_key), entry.timestamp))
    return intervals


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the run's worker process, from the engine event Dagster logs when it starts."""
    for entry in instance.all_logs(run_id):
        found = re.search(r"pid:? (\d+)", entry.user_message or "")
        if entry.dagster_event is not None and found:
            return int(found.group(1))
    return None


@pytest.mark.slow
def test_a_killed_run_is_marked_failed_and_retried_without_doubling(daemon) -> None:
    """SIGKILL a run's worker process: run monitoring marks the run failed instead of leaving it
    STARTED, the run retry of the project's dagster.yaml materializes the day once."""
    day = "2024-04-01"
    drop(daemon["root"] / "landing", day, "export-1", 5)
    with instance_of(daemon) as instance:
        wait_for(
            lambda: all(r.is_finished for r in instance.get_runs()),
            "the earlier tests' runs to finish",
            daemon=daemon,
        )
        before = {r.run_id for r in instance.get_runs()}
        first = wait_for(
            lambda: next(
                (
                    r
                    for r in instance.get_runs()
                    if r.run_id not in before and r.tags.get("dagster/partition") == day
                ),
                None,
            ),
            "the sensor's run for the landed day",
            daemon=daemon,
        )
        pid = wait_for(
            lambda: run_worker_pid(instance, first.run_id), "the run worker's pid", daemon=daemon
        )
        os.kill(pid, signal.SIGKILL)
        failed = wait_for(
            lambda: (lambda r: r if r.status == dg.DagsterRunStatus.FAILURE else None)(
                instance.get_run_by_id(first.run_id)
            ),
            "the killed run to be marked failed",
            daemon=daemon,
        )
        assert failed.status == dg.DagsterRunStatus.FAILURE
        retry = wait_for(
            lambda: next(
                (
                    r
                    for r in instance.get_runs()
                    if r.tags.get("dagster/parent_run_id") == first.run_id and r.is_finished
                ),
                None,
            ),
            "the retry of the killed run",
            daemon=daemon,
        )
        assert retry.status == dg.DagsterRunStatus.SUCCESS, daemon["log"].read_text()[-3000:]
    assert delta_log_rows(daemon["root"] / "tables" / "landed_orders")[day] == 5
    # the location's run_failure_alerts sensor, evaluated by the daemon, sent the failure
    alert = wait_for(
        lambda: next((b for b in daemon["webhook"].bodies if b["run_id"] == first.run_id), None),
        "the failure alert of the killed run at the webhook",
        daemon=daemon,
    )
    assert alert["partitions"] == day and alert["assets"] == ["landed_orders"], alert
    assert alert["run_url"].endswith(f"/runs/{first.run_id}")
    assert alert["tags"].get("dagster/sensor_name") == "landing_sensor", alert


@pytest.mark.slow
@pytest.mark.heavy
def test_a_multi_run_backfill_killed_halfway_resumes_without_doubling(daemon) -> None:
    """100 days as 10 runs of 10 days (`BackfillPolicy.multi_run`), launched together and
    bounded by the project's concurrency pool: 4 steps at once, and up to 8 runs at once (the
    pool's run buffer lets 4 more start and wait for a slot). One run's process dies after its
    first asset committed; the instance's run retry re-executes it from failure. Afterwards
    every day is in both tables once, each run committed each table once, and Dagster's
    partition status says every day is materialized."""
    from tests.backfill_location import KILLED_DAY, days, defs
    from tests.backfill_location import ROWS_PER_DAY as BACKFILL_ROWS_PER_DAY

    backfilled = days.get_partition_keys()[:100]
    assets = [dg.AssetKey("backfill_orders"), dg.AssetKey("backfill_totals")]
    with instance_of(daemon) as instance:
        launch_backfill(
            instance, "days100", defs, backfilled, ["backfill_orders", "backfill_totals"]
        )
        wait_for(
            lambda: all(
                instance.get_materialized_partitions(asset) == set(backfilled) for asset in assets
            ),
            "every day of the backfill materialized",
            timeout_s=480,
            daemon=daemon,
        )
        runs = wait_for(
            lambda: finished_runs(instance, "dagster/backfill", "days100", count=11),
            "the backfill's 10 runs and the retry",
            daemon=daemon,
        )
        killed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        assert len(killed) == 1, [(r.run_id, r.status) for r in runs]
        tags = killed[0].tags
        assert (
            tags["dagster/asset_partition_range_start"]
            <= KILLED_DAY
            <= tags["dagster/asset_partition_range_end"]
        )
        retries = [r for r in runs if r.tags.get("dagster/parent_run_id") == killed[0].run_id]
        assert [r.status for r in retries] == [dg.DagsterRunStatus.SUCCESS]
        assert len(runs) == 11 and all(
            r.status == dg.DagsterRunStatus.SUCCESS for r in runs if r not in killed
        )
        retried_steps = {
            entry.step_key
            for entry in instance.all_logs(
                retries[0].run_id, of_type=dg.DagsterEventType.STEP_START
            )
        }
        assert retried_steps == {"backfill_totals"}  # from failure: the committed step is kept
        intervals = step_intervals(instance, [r.run_id for r in runs])
        assert 2 <= most_at_once(intervals) <= 4, intervals
        records = instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in runs]))
        run_intervals = [(r.start_time, r.end_time) for r in records]
        assert all(start and end for start, end in run_intervals), run_intervals
        assert 2 <= most_at_once(run_intervals) <= 8, run_intervals
    tables = daemon["root"] / "tables"
    for table in ("backfill_orders", "backfill_totals"):
        assert delta_log_rows(tables / table) == dict.fromkeys(backfilled, BACKFILL_ROWS_PER_DAY)
        assert delta_version(tables / table) == 9  # 10 commits: one per run, none twice


@pytest.mark.heavy
def test_a_daemon_killed_during_a_backfill_resumes_it_without_doubling(daemon) -> None:
    """F24: the daemon process is SIGKILLed while a 2-run backfill is under way, and a new
    daemon is started on the same instance. The backfill completes; every day is in both tables
    once; each table got one commit per run that ran its step, none twice."""
    from dagster._core.execution.backfill import BulkActionStatus

    from tests.backfill_location import ROWS_PER_DAY as BACKFILL_ROWS_PER_DAY
    from tests.backfill_location import days, defs

    backfilled = days.get_partition_keys()[120:140]  # after the other test's 100 days
    assets = ["backfill_orders", "backfill_totals"]
    tables = daemon["root"] / "tables"
    before = {
        table: delta_version(tables / table) if (tables / table / "_delta_log").exists() else -1
        for table in assets
    }
    with instance_of(daemon) as instance:
        launch_backfill(instance, "restart20", defs, backfilled, assets)
        wait_for(
            lambda: any(
                r.status == dg.DagsterRunStatus.STARTED
                for r in instance.get_runs()
                if r.tags.get("dagster/backfill") == "restart20"
            ),
            "a run of the backfill to start",
            daemon=daemon,
        )
        daemon["process"].kill()  # the daemon alone: no cleanup of its own runs
        daemon["process"].wait(timeout=60)
        daemon["process"] = daemon["start"]()
        backfill = wait_for(
            lambda: (lambda b: b if b.status != BulkActionStatus.REQUESTED else None)(
                instance.get_backfill("restart20")
            ),
            "the backfill to finish under the new daemon",
            timeout_s=480,
            daemon=daemon,
        )
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, backfill.status
        runs = [r for r in instance.get_runs() if r.tags.get("dagster/backfill") == "restart20"]
        steps_run = {
            table: sum(
                1
                for run in runs
                for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
                if entry.step_key == table
            )
            for table in assets
        }
        for asset in assets:
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) >= set(backfilled)
    for table in assets:
        rows = delta_log_rows(tables / table)
        assert {day: rows.get(day) for day in backfilled} == dict.fromkeys(
            backfilled, BACKFILL_ROWS_PER_DAY
        )
        assert steps_run[table] >= 2  # 20 days, 10 a run
        assert delta_version(tables / table) == before[table] + steps_run[table]
