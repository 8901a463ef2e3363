"""The few private imports and internal hooks ray_assets needs, in one place.

Each entry says why it exists and since which version it is known to work, so an upgrade of
Dagster or Ray has one file to check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ray.data

# dagster 1.13: the run tags of a single-run backfill. `materialize()` takes no partition range
# (dagster#14905), so tests and the demo pass these tags, exactly as the backfill daemon does.
from dagster._core.storage.tags import (  # noqa: E402
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "bound_actor_restarts",
    "bound_task_retries",
    "detected_gpus",
    "enable_token_auth_in_this_process",
    "loopback_only_local_ray",
    "ray_dashboard_url",
    "resource_param_names",
]


def bound_task_retries(dataset: ray.data.Dataset, max_retries: int) -> None:
    """Cap Ray's retries of crashed tasks and actors for every operator of `dataset`.

    Ray Data 2.60 starts every task with `max_retries=-1` and every actor pool with
    `max_restarts=-1` (`ray/data/_internal/remote_fn.py`, `actor_pool_map_operator.py`): a
    record that kills its worker each time loops forever. DataContext has no knob for it, so
    we set the remote args on the logical operators, the same value on all of them so that
    operator fusion (which compares remote args) is unchanged. An operator whose user already
    chose a value keeps it.
    """
    from ray.data import ActorPoolStrategy

    seen: set[int] = set()
    stack = [dataset._logical_plan.dag]
    while stack:
        op = stack.pop()
        if id(op) in seen:
            continue
        seen.add(id(op))
        stack.extend(getattr(op, "input_dependencies", []) or [])
        remote_args = getattr(op, "ray_remote_args", None)
        if not isinstance(remote_args, dict):
            continue
        if isinstance(getattr(op, "compute", None), ActorPoolStrategy):
            remote_args.setdefault("max_restarts", max_retries)
            remote_args.setdefault("max_task_retries", max_retries)
        else:
            remote_args.setdefault("max_retries", max_retries)


def bound_actor_restarts(dataset: ray.data.Dataset, max_restarts: int) -> None:
    """Restart the actors of `dataset`'s last operator (an actor-pool `map_batches`) at most
    `max_restarts` times each, and retry a batch of a crashed actor as often.

    `map_batches` takes these only through `**ray_remote_args`, deprecated in Ray 2.60 (to go
    in 2.64) with no named replacement yet; setting them on the logical operator says the same
    without the warning, and `bound_task_retries` (which only fills what is unset) keeps them.
    """
    remote_args = dataset._logical_plan.dag.ray_remote_args
    remote_args["max_restarts"] = max_restarts
    remote_args["max_task_retries"] = max_restarts


def detected_gpus() -> int:
    """The GPUs Ray detects on this machine (`CUDA_VISIBLE_DEVICES` respected), without
    starting Ray: Ray 2.60's accelerator manager, the code `ray start` runs for its GPU count."""
    from ray._private.accelerators import get_accelerator_manager_for_resource

    manager = get_accelerator_manager_for_resource("GPU")
    return int(manager.get_current_node_num_accelerators()) if manager else 0


def resource_param_names(fn: Any) -> list[str]:
    """Names of the parameters of an asset function that ask Dagster for a resource.

    Dagster decides this in `dagster._core.definitions.resource_annotation.get_resource_args`
    (1.13); we reuse its rule so `ray_asset` can turn such parameters into resource keys.
    """
    from dagster._core.definitions.resource_annotation import get_resource_args

    return [param.name for param in get_resource_args(fn)]


def enable_token_auth_in_this_process() -> None:
    """Turn Ray's token authentication on for this process, before it connects to a head.

    Ray 2.60: `ray.init(address=...)` never turns it on, and Ray reads `RAY_AUTH_MODE` into its
    config once, when `ray` is imported, which a run's code has usually done by then. Set the
    variable and have Ray read its config again (`ray._raylet.Config.initialize`), as Ray's own
    `_enable_token_auth` does.
    """
    import os

    from ray._raylet import Config

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")


_CLUSTER_MODE_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def loopback_only_local_ray() -> Iterator[None]:
    """Within it, a local `ray.init()` starts a Ray whose servers listen on 127.0.0.1 only.

    Ray 2.60 on Linux binds the GCS, the raylet and the workers of even a local `ray.init()` on
    every interface (`::`); it keeps to loopback where it thinks it cannot form a cluster (macOS,
    Windows): `ray._private.ray_constants.ENABLE_RAY_CLUSTER`, read from
    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER` when `ray` is imported, decides for this process, and the
    variable decides for the processes `ray.init` starts. Both are restored on exit, so that a
    later connection of this process to a real cluster advertises the machine's address.
    """
    import os

    from ray._private import ray_constants

    before_constant = ray_constants.ENABLE_RAY_CLUSTER
    before_variable = os.environ.get(_CLUSTER_MODE_VARIABLE)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[_CLUSTER_MODE_VARIABLE] = "0"
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_constant
        if before_variable is None:
            os.environ.pop(_CLUSTER_MODE_VARIABLE, None)
        else:
            os.environ[_CLUSTER_MODE_VARIABLE] = before_variable


def ray_dashboard_url() -> str | None:
    """The dashboard of the Ray this process is connected to, as `http://host:port`, or None
    (no Ray connected, or a Ray without a dashboard, as `ray[data]` alone runs).

    Ray 2.60: `ray._private.worker.get_dashboard_url()` is what `ray.init()`'s context reports,
    and it honours Ray's own `RAY_OVERRIDE_DASHBOARD_URL` (a dashboard behind a proxy). It is
    read only when Ray is already imported and connected: metadata must not start Ray.
    """
    import os
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    override = os.environ.get("RAY_OVERRIDE_DASHBOARD_URL")
    if override and "://" in override:
        return override  # Ray strips the scheme, and an https proxy is not http
    from ray._private.worker import get_dashboard_url

    try:
        url = get_dashboard_url()
    except Exception:  # a driver that lost its cluster has no dashboard to link to
        return None
    if not url:
        return None
    return url if "://" in url else f"http://{url}"
