"""ActorPool on the shared 2-CPU Ray session (and a subprocess Ray with logical GPUs): the
model built once per actor, sizing that leaves the read and write stages CPUs, the GPU
fallback, and faults (a raising model, a killed actor, a stalled stage) that commit nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
import ray.cloudpickle

from ray_assets import DeltaIOManager, RayResource, ray_asset
from ray_assets.actor_pools import ActorPool
from ray_assets.errors import ActorPoolError
from ray_assets.models import ModelArtifact, record_model, save_model
from tests.conftest import delta_version, failure_text

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
ROWS = 20_000


class CountingModel:
    """Counts its constructions in a folder (one file each) and adds a score per row."""

    def __init__(self, model: ModelArtifact, seen: str) -> None:
        self.weight = float(model.read_bytes().decode())
        self.pid = os.getpid()
        Path(seen, f"init-{self.pid}-{time.monotonic_ns()}").touch()
        self.seen = seen

    def __call__(self, batch: pa.Table) -> pa.Table:
        Path(self.seen, f"batch-{self.pid}-{time.monotonic_ns()}").touch()
        scores = pa.compute.multiply(batch["id"], self.weight)
        return batch.append_column("score", scores).append_column(
            "pid", pa.array([self.pid] * batch.num_rows)
        )


class Misbehaving:
    """Raises, kills its own process or hangs, as `how` says."""

    def __init__(self, how: str, marker: str) -> None:
        self.how, self.marker = how, Path(marker)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.how == "raise":
            raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.how == "kill_once" and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if self.how == "kill_always":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.how == "hang":
            time.sleep(3_600)
        return batch


def _ids(rows: int = ROWS):
    import ray.data

    return ray.data.range(rows, override_num_blocks=10)


def test_the_model_is_built_once_per_actor_not_per_batch(ray_session, tmp_path) -> None:
    model = save_model(b"0.5", tmp_path / "models", "weights")
    seen = tmp_path / "seen"
    seen.mkdir()
    pool = ActorPool(cpus_per_actor=0.5, batch_size=1_000)
    assert pool.plan().max_actors == 2  # (2 CPUs - 1 reserved) / 0.5
    scored = pool.map(_ids(), CountingModel, {"model": model, "seen": str(seen)}).to_pandas()
    assert len(scored) == ROWS and (scored["score"] == scored["id"] * 0.5).all()
    init_pids = [int(path.name.split("-")[1]) for path in seen.glob("init-*")]
    batch_pids = [int(path.name.split("-")[1]) for path in seen.glob("batch-*")]
    assert len(batch_pids) >= ROWS // 1_000
    # each actor built the model once, whatever its number of batches (Ray may start a second
    # actor that the scheduler then gives no batch)
    assert 1 <= len(init_pids) <= 2 and len(set(init_pids)) == len(init_pids)
    assert set(scored["pid"]) == set(batch_pids) <= set(init_pids)


def test_without_gpus_the_pool_falls_back_to_cpu_or_fails_clearly(ray_session, tmp_path) -> None:
    model = save_model(b"2", tmp_path / "models", "weights")
    seen = tmp_path / "seen"
    seen.mkdir()
    gpu_pool = ActorPool(gpus_per_actor=0.5, fallback="cpu")
    plan = gpu_pool.plan()
    assert plan.fell_back_to_cpu and plan.gpus_per_actor == 0 and plan.max_actors == 1
    assert "no GPU in the cluster, so on CPU" in plan.describe()
    light = ActorPool(cpus_per_actor=0, gpus_per_actor=0.5).plan()  # a GPU actor asking no CPU
    assert light.fell_back_to_cpu and light.cpus_per_actor == 1 and light.max_actors == 1
    assert ActorPool(cpus_per_actor=0).plan().max_actors == 1  # never unbounded
    scored = gpu_pool.map(_ids(2_000), CountingModel, {"model": model, "seen": str(seen)})
    assert scored.count() == 2_000
    with pytest.raises(ActorPoolError, match="0.5 GPU per actor and the Ray cluster has none"):
        ActorPool(gpus_per_actor=0.5, fallback="fail").map(_ids(), CountingModel)
    with pytest.raises(ActorPoolError, match="not one actor of 2 CPU fits"):
        ActorPool(cpus_per_actor=2).plan()


def test_logical_gpus_give_each_actor_its_gpu_and_cuda_visible_devices(tmp_path) -> None:
    """A Ray of its own with 2 logical GPUs (this machine has none): GPU scheduling runs as
    on a GPU node (two actors of half a GPU each), and `device()` still answers cpu, since PyTorch sees no CUDA."""
    script = textwrap.dedent(
        """
        import os, json, ray, ray.data
        from ray_assets.actor_pools import ActorPool
        from ray_assets.models import device

        class WhereAmI:
            def __init__(self):
                ids = ray.get_runtime_context().get_accelerator_ids()["GPU"]
                self.seen = json.dumps([ids, os.environ.get("CUDA_VISIBLE_DEVICES"), device()])
            def __call__(self, batch):
                return {"seen": [self.seen] * len(batch["id"])}

        ray.init(num_cpus=2, num_gpus=2, include_dashboard=False)
        pool = ActorPool(
            cpus_per_actor=0, gpus_per_actor=0.5, min_actors=2, max_actors=2, batch_size=100
        )
        plan = pool.plan()
        rows = pool.map(ray.data.range(4_000, override_num_blocks=8), WhereAmI).take_all()
        fits = ActorPool(cpus_per_actor=0, gpus_per_actor=0.5).plan().max_actors
        print(json.dumps({"max": fits, "seen": sorted({r["seen"] for r in rows})}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["max"] == 4  # 2 GPUs / 0.5 per actor: four fit, two are started
    seen = [json.loads(entry) for entry in report["seen"]]
    assert seen and all(len(ids) == 1 and ids[0] in {"0", "1"} for ids, _, _ in seen)
    assert all(visible == ids[0] for ids, visible, _ in seen)
    assert {where for _, _, where in seen} == {"cpu"}


def _resources(root: Path, max_restarts: int = 3, batch_timeout_s=600, **ray_options) -> dict:
    return {
        "ray": RayResource(**ray_options),
        "delta_io_manager": DeltaIOManager(root_uri=str(root)),
        "scoring": ActorPool(
            batch_size=1_000, max_restarts=max_restarts, batch_timeout_s=batch_timeout_s
        ),
    }


def _scored_asset(how: str, marker: Path):
    @ray_asset(partitions_def=DAILY, partition_column="day", name="scored")
    def scored(context, scoring: ActorPool):
        key = context.partition_key
        days = _ids(4_000).map_batches(
            lambda b: b.append_column("day", pa.array([key] * b.num_rows)),
            batch_format="pyarrow",
        )
        return scoring.map(days, Misbehaving, {"how": how, "marker": str(marker)}, log=context.log)

    return scored


def _materialize(asset, root: Path, instance=None, **options) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [asset],
        partition_key="2024-01-02",
        resources=_resources(root, **options),
        instance=instance,
        raise_on_error=False,
    )


def test_scoring_streams_into_one_commit_with_the_model_version(ray_session, tmp_path) -> None:
    model = save_model(b"3", tmp_path / "models", "weights")
    seen = tmp_path / "seen"
    seen.mkdir()

    @ray_asset(partitions_def=DAILY, partition_column="day")
    def scored(context, scoring: ActorPool):
        key = context.partition_key
        days = _ids(4_000).map_batches(
            lambda b: b.append_column("day", pa.array([key] * b.num_rows)),
            batch_format="pyarrow",
        )
        record_model(context, model)
        return scoring.map(
            days, CountingModel, {"model": model, "seen": str(seen)}, log=context.log
        )

    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(scored, tmp_path, instance)
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["model/version"].value == model.version
    assert metadata["dagster/row_count"].value == 4_000
    logs = [record.user_message for record in instance.all_logs(result.run_id)]
    assert any("ActorPool CountingModel: 1 actor of 1 CPU (2 CPUs" in m for m in logs)
    assert delta_version(tmp_path / "scored") == 0


def test_a_raising_model_fails_fast_and_commits_nothing(ray_session, tmp_path) -> None:
    ok = _materialize(_scored_asset("pass", tmp_path / "marker"), tmp_path)
    assert ok.success
    started = time.monotonic()
    failed = _materialize(_scored_asset("raise", tmp_path / "marker"), tmp_path)
    assert not failed.success and time.monotonic() - started < 60  # not retried
    message = failure_text(failed)
    assert "MemoryError: CUDA out of memory" in message and "test_actor_pools.py" in message
    assert "nothing was committed" in message
    assert delta_version(tmp_path / "scored") == 0


def test_a_killed_actor_is_restarted_and_the_commit_is_exact(ray_session, tmp_path) -> None:
    result = _materialize(_scored_asset("kill_once", tmp_path / "marker"), tmp_path)
    assert result.success and (tmp_path / "marker").exists()  # it did die once
    assert (
        result.get_asset_materialization_events()[0]
        .materialization.metadata["dagster/row_count"]
        .value
        == 4_000
    )
    again = _materialize(
        _scored_asset("kill_always", tmp_path / "marker"), tmp_path, max_restarts=1
    )
    assert not again.success
    assert "an actor process of the pipeline died" in failure_text(again)
    assert delta_version(tmp_path / "scored") == 0


def test_a_stalled_stage_fails_within_the_timeout_and_is_named(ray_session, tmp_path) -> None:
    """The pipeline gives up after the no-progress timeout, naming the stage; the hung actor
    then exits after its batch timeout, so it does not hold a CPU of the shared Ray."""
    import ray

    started = time.monotonic()
    try:
        result = _materialize(
            _scored_asset("hang", tmp_path / "marker"),
            tmp_path,
            no_progress_timeout_s=5,
            batch_timeout_s=7,
            max_restarts=0,
        )
    finally:
        RayResource().configure_data_context()  # the session's other tests keep the default
    elapsed = time.monotonic() - started
    assert not result.success and elapsed < 120
    message = failure_text(result)
    assert "made no progress" in message and "MapBatches(Misbehaving)" in message
    assert not (tmp_path / "scored" / "_delta_log").exists()  # no table was created
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, "the hung actor still holds its CPU"
        time.sleep(0.5)
