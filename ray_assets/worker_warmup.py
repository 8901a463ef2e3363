"""Warm Ray workers for a run: the processes and imports a pipeline's first tasks would wait for.

Ray starts worker processes per job (per driver process), so every Dagster run process pays for
them again, even on a long-lived head: a Python process, then Ray Data, pyarrow and the readers
and sink of ray_assets imported, about 3 s on a small machine before the first task runs.
`RayResource` submits `warm_worker` tasks as soon as Ray is up and does not wait for them, so
that cost overlaps with Dagster's step setup instead of following it. This module imports
nothing heavy itself: a worker unpickles the task by its module name.
"""

from __future__ import annotations

MAX_WARM_WORKERS = 8


def warm_worker() -> None:
    """Import what the readers, the aggregation and the sink of ray_assets run on."""
    import pyarrow.dataset  # noqa: F401
    import ray.data  # noqa: F401

    import ray_assets.aggregates  # noqa: F401
    import ray_assets.storage.delta_sink  # noqa: F401
    import ray_assets.storage.delta_source  # noqa: F401


def start_warm_workers() -> list:
    """Submit one `warm_worker` task per CPU of the cluster (at most `MAX_WARM_WORKERS`); the
    refs are returned for whoever wants to wait, nobody has to."""
    import ray

    count = min(MAX_WARM_WORKERS, int(ray.cluster_resources().get("CPU", 0)))
    task = ray.remote(warm_worker).options(num_cpus=1, max_retries=0, name="ray_assets.warm")
    return [task.remote() for _ in range(count)]
