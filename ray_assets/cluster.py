"""What the connected Ray cluster offers, asked in one place.

Dagster-free on purpose: the datasources and the warm-up that use it are unpickled in Ray
workers, which must not import Dagster (about 1 s per worker).
"""

from __future__ import annotations


def cluster_cpus() -> int:
    """The CPUs of the connected Ray cluster, as Ray counts them (0 before any node joined);
    callers size tasks, shards and shuffles from it with bounds of their own."""
    import ray

    return int(ray.cluster_resources().get("CPU", 0))


def parallel_tasks() -> int:
    """How many tasks the connected cluster runs at once by default (its CPUs, at least one):
    the connectors' default count of read shards, chunk groups and streams."""
    return max(1, cluster_cpus())
