"""Warm Ray workers for a run: the processes and imports a pipeline's first tasks would wait for.

Ray starts worker processes per job (per driver process), so every Dagster run process pays for
them again, even on a long-lived head: a Python process, then Ray Data, pyarrow and the readers
and sink of ray_assets imported, about 3 s on a small machine before the first task runs.
`RayResource` submits `warm_worker` tasks as soon as Ray is up and does not wait for them, so
that cost overlaps with Dagster's step setup instead of following it. A pipeline's first
execution also starts Ray Data's own cluster-wide actors (its stats actor and autoscaling
coordinator), each a worker process of its own; `start_ray_data_actors` starts them at the same
moment. This module imports nothing heavy itself: a worker unpickles the task by its module name.
"""

from __future__ import annotations

import importlib
import logging

MAX_WARM_WORKERS = 8

_WORKER_MODULES = (
    "pyarrow.dataset",
    "pyarrow.acero",  # pyarrow's group-by, used by aggregate_by's partial sums
    "ray.data",
    "ray_assets.aggregates",
    "ray_assets.lookups",
    "ray_assets.storage.files_sink",
    "ray_assets.storage.files_source",
    "ray_assets.storage.parquet_source",
)
"""What the tasks of a ray_assets pipeline import: the readers, the aggregation and the sink."""

_RAY_DATA_TASK_MODULES = (
    # Modules Ray 2.60's map tasks import on their first run (found by comparing a warmed
    # worker's `sys.modules` with one that ran a pipeline); the first pulls in pydantic, about
    # 0.3 s. Internal names: a Ray that renamed them only loses the head start.
    "ray.data._internal.issue_detection.issue_detector_manager",
    "ray.data._internal.planner.plan_udf_map_op",
    "ray.data._internal.execution.operators.hash_shuffle",
    "ray.data.extensions",
)

_log = logging.getLogger(__name__)


def warm_worker() -> None:
    """Import what the tasks of a pipeline run on, before the pipeline needs it."""
    for name in _WORKER_MODULES:
        importlib.import_module(name)
    for name in _RAY_DATA_TASK_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def start_warm_workers() -> list:
    """Submit one `warm_worker` task per CPU of the cluster (at most `MAX_WARM_WORKERS`); the
    refs are returned for whoever wants to wait, nobody has to."""
    import ray

    from ray_assets.cluster import cluster_cpus

    count = min(MAX_WARM_WORKERS, cluster_cpus())
    task = ray.remote(warm_worker).options(num_cpus=1, max_retries=0, name="ray_assets.warm")
    return [task.remote() for _ in range(count)]


def start_ray_data_actors() -> None:
    """Create (or find) Ray Data's stats actor and autoscaling coordinator without waiting for
    them, as its first execution would; both are detached, so on a shared head or a cluster
    only the first run creates them. Ray Data's getters are internal: if a Ray release moves
    them, the first pipeline starts the actors as before."""
    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )
        from ray.data._internal.stats import get_or_create_stats_actor

        get_or_create_stats_actor()
        get_or_create_autoscaling_coordinator()
    except Exception as error:  # noqa: BLE001 - a head start, never a reason to fail a run
        _log.debug("Ray Data's actors were not started early: %s", error)
