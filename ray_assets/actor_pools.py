"""`ActorPool`: a model run over a Ray Dataset by a pool of long-lived actors, CPU or GPU.

A callable class on an actor pool loads its model once per actor and then scores batch after
batch; a function would reload it per batch. The resource decides, once per run and against
the connected cluster, what Ray Data's `map_batches` leaves to the user and gets wrong on
small machines: how many actors fit while leaving CPUs to the read and write stages (on a
2-CPU node, two actors of one CPU each starve the read stage and the pipeline stalls for Ray's
30-minute no-progress timeout), whether GPUs are there (else CPU, or a clear error), and how
often a crashed actor process is restarted (Ray's default: forever).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field

from ray_assets.errors import ActorPoolError

if TYPE_CHECKING:
    import ray.data


@dataclass(frozen=True)
class PoolPlan:
    """What a pool runs as on the connected cluster."""

    min_actors: int
    max_actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    cluster_cpus: float
    cluster_gpus: float
    fell_back_to_cpu: bool

    def describe(self) -> str:
        gpus = f", {self.gpus_per_actor:g} GPU" if self.gpus_per_actor else ""
        size = (
            f"{self.min_actors}"
            if self.min_actors == self.max_actors
            else f"{self.min_actors} to {self.max_actors}"
        )
        where = f"{self.cluster_cpus:g} CPUs, {self.cluster_gpus:g} GPUs in the cluster"
        fallback = "; no GPU in the cluster, so on CPU" if self.fell_back_to_cpu else ""
        each = " each" if self.max_actors > 1 else ""
        actors = "actor" if self.max_actors == 1 else "actors"
        return f"{size} {actors} of {self.cpus_per_actor:g} CPU{gpus}{each} ({where}){fallback}"


class ActorPool(dg.ConfigurableResource):
    """A pool of actors that each build a model once and run it on batch after batch.

    `map(dataset, Model, model_kwargs)` returns the dataset with `Model(**model_kwargs)`
    applied to each batch (`Model.__call__(batch) -> batch`), lazily, as one more stage of the
    pipeline: the read before it and the write after it stream as usual.
    """

    min_actors: int = Field(default=1, ge=1, description="Actors started before the first batch.")
    max_actors: int | None = Field(
        default=None,
        ge=1,
        description="The most actors; None: as many as the cluster fits after `reserved_cpus` "
        "(and its GPUs, for a GPU pool).",
    )
    cpus_per_actor: float = Field(default=1.0, ge=0, description="CPUs each actor holds.")
    gpus_per_actor: float = Field(
        default=0.0, ge=0, description="GPUs each actor holds; fractions share a GPU (0.5: two)."
    )
    reserved_cpus: float = Field(
        default=1.0,
        ge=0,
        description="CPUs the pool never takes, so the read and write stages always run.",
    )
    batch_size: int = Field(default=4096, ge=1, description="Rows per call of the model.")
    batch_format: Literal["pyarrow", "pandas", "numpy"] = Field(
        default="pyarrow", description="What the model receives and returns."
    )
    fallback: Literal["cpu", "fail"] = Field(
        default="cpu",
        description="When the pool asks for GPUs and the cluster has none: run on CPU, or fail.",
    )
    batch_timeout_s: float | None = Field(
        default=600,
        gt=0,
        description="A batch that runs longer is a hung model: its actor exits, so that it does "
        "not hold its CPU or GPU after the pipeline gave up (None: no limit).",
    )
    max_restarts: int = Field(
        default=3,
        ge=0,
        description="Times a crashed actor process is restarted (its batch retried) before the "
        "pipeline fails.",
    )

    def plan(self) -> PoolPlan:
        """The pool's size and resources on the connected cluster, or a clear error."""
        import ray

        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        gpus_per_actor, cpus_per_actor, fell_back = self.gpus_per_actor, self.cpus_per_actor, False
        if gpus_per_actor and not gpus:
            if self.fallback == "fail":
                raise ActorPoolError(
                    f"ActorPool asks for {gpus_per_actor:g} GPU per actor and the Ray cluster "
                    f"has none ({cpus:g} CPUs); set fallback='cpu' to run on CPU, or connect "
                    "to a cluster with GPUs"
                )
            gpus_per_actor, fell_back = 0.0, True
            cpus_per_actor = cpus_per_actor or 1.0  # on CPU, the model's work needs a CPU
        spare = cpus - self.reserved_cpus
        if cpus_per_actor:
            fits = math.floor(spare / cpus_per_actor + 1e-9)
        elif gpus_per_actor:
            fits = 10**6  # bounded by the GPUs below
        else:  # CPU work that asks for no CPU: never more actors than there are spare CPUs
            fits = max(1, math.floor(spare + 1e-9))
        if gpus_per_actor:
            fits = min(fits, math.floor(gpus / gpus_per_actor + 1e-9))
        if fits < 1:
            raise ActorPoolError(
                f"ActorPool: not one actor of {cpus_per_actor:g} CPU fits in the Ray "
                f"cluster's {cpus:g} CPUs while {self.reserved_cpus:g} stay for the read and "
                "write stages; lower cpus_per_actor or reserved_cpus, or add CPUs"
            )
        most = min(self.max_actors or fits, fits)
        return PoolPlan(
            min_actors=min(self.min_actors, most),
            max_actors=most,
            cpus_per_actor=cpus_per_actor,
            gpus_per_actor=gpus_per_actor,
            cluster_cpus=cpus,
            cluster_gpus=gpus,
            fell_back_to_cpu=fell_back,
        )

    def map(
        self,
        dataset: ray.data.Dataset,
        model: type,
        model_kwargs: dict[str, Any] | None = None,
        *,
        log: Any = None,
    ) -> ray.data.Dataset:
        """`dataset` with `model(**model_kwargs)` applied to every batch by the pool's actors.

        `model` is a class: its constructor loads the model (once per actor), its `__call__`
        takes a batch and returns the batch to keep. On a GPU actor Ray sets
        `CUDA_VISIBLE_DEVICES` to the actor's GPU; `ray_assets.models.device()` tells the model
        where to run.
        `log` (a Dagster logger, e.g. `context.log`) gets one line on how the pool runs.
        """
        from ray.data import ActorPoolStrategy

        from ray_assets._compat import bound_actor_restarts
        from ray_assets.pool_actors import guarded

        plan = self.plan()
        if log is not None:
            (log.warning if plan.fell_back_to_cpu else log.info)(
                f"ActorPool {model.__name__}: {plan.describe()}"
            )
        mapped = dataset.map_batches(
            guarded(model, self.batch_timeout_s),
            fn_constructor_kwargs=dict(model_kwargs or {}),
            compute=ActorPoolStrategy(min_size=plan.min_actors, max_size=plan.max_actors),
            batch_size=self.batch_size,
            batch_format=self.batch_format,
            num_cpus=plan.cpus_per_actor,
            num_gpus=plan.gpus_per_actor,
        )
        bound_actor_restarts(mapped, self.max_restarts)
        return mapped


GPU_POOL_SUFFIX = "_gpu"


def gpu_pool() -> str:
    """The Dagster concurrency pool of GPU steps: `<the Ray pool>_gpu` (`ray_gpu` by default).
    Its limit is the cluster's GPU count (`size_gpu_pool`), so GPU runs never oversubscribe."""
    from ray_assets.asset import default_pool

    return f"{default_pool()}{GPU_POOL_SUFFIX}"


def size_gpu_pool(instance: dg.DagsterInstance, gpus: int, *, replace: bool = False) -> int:
    """Give `gpu_pool()` one slot per GPU (one when there is none: a CPU fallback still runs
    one at a time) unless the instance already has a limit for it and `replace` is False (a
    limit set with `dagster instance concurrency set` wins). The pool's limit."""
    storage = instance.event_log_storage
    pool = gpu_pool()
    if not replace and pool in storage.get_concurrency_keys():
        return storage.get_concurrency_info(pool).slot_count
    slots = max(1, int(gpus))
    storage.set_concurrency_slots(pool, slots)
    return slots


def machine_gpus() -> int:
    """The GPUs of this machine, as Ray would count them when it starts here (no Ray needed)."""
    from ray_assets._compat import detected_gpus

    return detected_gpus()
