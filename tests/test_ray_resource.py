"""RayResource: one Ray per process, shut down only by its starter, and safe Ray Data settings."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from ray_assets import DeltaStore, PartitionSlice, PipelineFailedError, RayResource


def test_reuses_the_running_ray_and_leaves_it_running(ray_session, tmp_path) -> None:
    import ray

    from ray_assets.ray_resource import connectable_address

    seen = {}

    @dg.asset
    def probe(context: dg.AssetExecutionContext, ray_resource: RayResource) -> None:
        seen["address"] = ray.get_runtime_context().gcs_address

    assert dg.materialize([probe], resources={"ray_resource": RayResource()}).success
    assert connectable_address(seen["address"]) == ray_session
    assert ray.is_initialized()


def test_data_context_is_bounded_and_strict(ray_session) -> None:
    from ray.data import DataContext

    context = DataContext.get_current()
    before = (
        context.execution_no_progress_timeout_s,
        context.get_config("ray_assets.max_task_retries"),
    )
    try:
        RayResource(max_task_retries=1, no_progress_timeout_s=42).configure_data_context()
        assert context.max_errored_blocks == 0
        assert context.execution_no_progress_timeout_s == 42
        assert context.get_config("ray_assets.max_task_retries") == 1
        assert context.op_resource_reservation_enabled is False
        RayResource(op_resource_reservation=True).configure_data_context()
        assert context.op_resource_reservation_enabled is True
    finally:
        RayResource().configure_data_context()
        context.execution_no_progress_timeout_s = before[0]
        context.set_config("ray_assets.max_task_retries", before[1])


def test_shuffle_partitions_follow_the_cluster_unless_set(ray_session) -> None:
    """Ray's default of 200 hash partitions is for big clusters; the session has 2 CPUs."""
    import ray
    from ray.data import DataContext

    from ray_assets import shuffle_partitions

    context = DataContext.get_current()
    try:
        RayResource().configure_data_context()
        cpus = int(ray.cluster_resources()["CPU"])
        assert context.default_hash_shuffle_parallelism == max(2, cpus) == shuffle_partitions()
        RayResource(shuffle_partitions=7).configure_data_context()
        assert shuffle_partitions() == 7
        grouped = ray.data.range(100).groupby("id").count().materialize()
        assert grouped.count() == 100
        assert grouped.num_blocks() <= 7  # one output block per hash partition at most
    finally:
        RayResource().configure_data_context()
    with pytest.raises(ValueError, match="shuffle_partitions must be 1 or more"):
        RayResource(shuffle_partitions=0)


def test_a_one_stage_pipeline_uses_every_cpu(ray_session) -> None:
    """Without the per-operator reservation (off by default), tasks run side by side on all CPUs."""
    import ray.data

    def stamp(batch: dict) -> dict:  # nested: pickled by value, test modules are not on workers
        import os
        import time

        started = time.time()
        time.sleep(0.4)  # the task's work: long enough for a second task to start beside it
        return {"pid": [os.getpid()], "start": [started], "end": [time.time()]}

    # warm two workers first: tests that ran other drivers on this Ray may have retired ours,
    # and a worker's start-up (seconds) inside the timed span says nothing about scheduling
    ray.data.range(2, override_num_blocks=2).map_batches(stamp, batch_size=None).take_all()
    rows = ray.data.range(12, override_num_blocks=12).map_batches(stamp, batch_size=None).take_all()
    busy = sum(row["end"] - row["start"] for row in rows)
    span = max(row["end"] for row in rows) - min(row["start"] for row in rows)
    # average tasks running at once: about 1.9 of 2 CPUs here, about 1.25 with Ray's reservation
    assert busy / span > 1.6, (busy, span)
    assert len({row["pid"] for row in rows}) == 2


def test_a_stalled_pipeline_fails_with_a_clear_message(ray_session, tmp_path) -> None:
    import ray.data
    from ray.data import DataContext

    context = DataContext.get_current()
    before = context.execution_no_progress_timeout_s
    RayResource(no_progress_timeout_s=3).configure_data_context()
    try:
        # asks for more CPUs than the cluster has: no task can ever start
        stuck = ray.data.range(10).map_batches(lambda b: b, num_cpus=3)
        with pytest.raises(PipelineFailedError, match="made no progress for at least 3s"):
            DeltaStore(str(tmp_path / "t")).write(stuck, PartitionSlice.unpartitioned("stuck"))
    finally:
        context.execution_no_progress_timeout_s = before


def test_warm_workers_import_what_pipelines_run_on_in_every_cpus_worker(ray_session) -> None:
    """What `RayResource(warm_workers=True)`, the default, submits when it brings Ray up: one
    task per CPU that imports Ray Data, pyarrow and the readers and sink in a worker."""
    import ray

    from ray_assets.worker_warmup import start_warm_workers

    assert RayResource().warm_workers
    refs = start_warm_workers()
    assert len(refs) == 2 and ray.get(refs, timeout=120) == [None, None]


def test_ray_client_addresses_are_refused_when_configured() -> None:
    with pytest.raises(Exception, match="Ray Client addresses"):
        RayResource(address="ray://head:10001")


def test_infinite_retries_are_refused() -> None:
    with pytest.raises(Exception, match="max_task_retries must be 0 or more"):
        RayResource(max_task_retries=-1)


EMBEDDED = textwrap.dedent(
    """
    import atexit, gc, os
    import dagster as dg, ray
    from ray_assets import RayResource

    os.environ["MIMALLOC_PURGE_DELAY"] = "777"  # the user's own choice: kept

    # registered first, so it runs last: after the hook RayResource registers (fast_exit)
    atexit.register(lambda: print("FROZEN_AT_EXIT", gc.get_freeze_count() > 0, flush=True))
    inside = {}

    @dg.asset
    def probe(context: dg.AssetExecutionContext, ray_resource: RayResource) -> None:
        inside["up"] = ray.is_initialized()
        inside["cpus"] = ray.cluster_resources().get("CPU")
        inside["worker_env"] = ray.get(ray.remote(
            lambda: {k: v for k, v in os.environ.items() if k.startswith("MIMALLOC_")}).remote())

    result = dg.materialize([probe], resources={"ray_resource": RayResource(
        num_cpus=1, object_store_memory_bytes=100 * 1024**2)})
    print("RESULT", result.success, inside["up"], inside["cpus"], ray.is_initialized())
    driver_env = {k: v for k, v in os.environ.items() if k.startswith("MIMALLOC_")}
    print("ALLOCATOR", sorted(inside["worker_env"].items()), sorted(driver_env.items()))
    """
)


def test_embedded_ray_is_started_for_the_run_and_shut_down_after(tmp_path) -> None:
    script = tmp_path / "embedded.py"
    script.write_text(EMBEDDED)
    completed = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=Path(__file__).parent.parent,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "RESULT True True 1.0 False" in completed.stdout
    # workers got the allocator settings, less the one the user had set; the driver's
    # environment is as it was
    worker = [("MIMALLOC_ALLOW_THP", "0"), ("MIMALLOC_PURGE_DELAY", "777")]
    driver = [("MIMALLOC_PURGE_DELAY", "777")]
    assert f"ALLOCATOR {worker} {driver}" in completed.stdout
    assert "Ray (embedded) is up" in completed.stderr
    # the interpreter's last full collection is skipped: every live object frozen at exit
    assert "FROZEN_AT_EXIT True" in completed.stdout


@pytest.mark.parametrize("fast_exit", [True, False])
def test_fast_exit_registers_its_exit_hook_only_when_on(
    ray_session, monkeypatch, fast_exit
) -> None:
    from ray_assets import process_exit

    calls = []
    monkeypatch.setattr(process_exit, "skip_final_gc_at_exit", lambda: calls.append(True))
    RayResource(fast_exit=fast_exit).setup_for_execution(dg.build_init_resource_context())
    assert calls == ([True] if fast_exit else [])


def test_loopback_addresses_are_passed_in_the_form_ray_keeps() -> None:
    from ray_assets.ray_resource import connectable_address

    assert connectable_address("127.0.0.1:6379") == "[::ffff:127.0.0.1]:6379"
    assert connectable_address("localhost:6379") == "[::ffff:127.0.0.1]:6379"
    for kept in ("auto", "10.1.2.3:6379", "head.internal:6379", "[::ffff:127.0.0.1]:6379"):
        assert connectable_address(kept) == kept


def test_allocator_settings_leave_what_the_environment_sets() -> None:
    from ray_assets.worker_memory import WORKER_ALLOCATOR_ENV, allocator_env

    assert allocator_env({}) == dict(WORKER_ALLOCATOR_ENV)
    assert allocator_env({"MIMALLOC_ALLOW_THP": "1", "PATH": "/bin"}) == {
        "MIMALLOC_PURGE_DELAY": WORKER_ALLOCATOR_ENV["MIMALLOC_PURGE_DELAY"]
    }


@pytest.mark.parametrize("tune", [True, False])
def test_the_allocator_settings_reach_only_the_processes_started_within(monkeypatch, tune) -> None:
    """What `ray.init` would see while it starts the raylet: the settings when the resource
    tunes the allocator, nothing otherwise; the process's environment is restored after."""
    for name in ("MIMALLOC_ALLOW_THP", "MIMALLOC_PURGE_DELAY"):
        monkeypatch.delenv(name, raising=False)
    with RayResource(tune_worker_allocator=tune)._allocator_env():
        inside = {k: v for k, v in os.environ.items() if k.startswith("MIMALLOC_")}
    after = {k: v for k, v in os.environ.items() if k.startswith("MIMALLOC_")}
    assert inside == ({"MIMALLOC_ALLOW_THP": "0", "MIMALLOC_PURGE_DELAY": "10000"} if tune else {})
    assert after == {}
