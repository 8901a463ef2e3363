"""`ray_asset`: `dg.asset` for functions that return a lazy Ray pipeline.

The asset body composes the pipeline; `ray_asset` then streams it into the asset's table itself
rather than handing it to the IO manager, because only the body can attach metadata to each
partition of a range run (`context.add_asset_metadata(..., partition_key=k)`; an IO manager
cannot). Either way the commit is decided in one place: `DeltaIOManager.write_asset` ->
`DeltaStore.write`. Downstream assets load the table through the IO manager as usual.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

from ray_assets._compat import resource_param_names
from ray_assets.errors import PartitionColumnError, PartitionKeyError
from ray_assets.io_manager import DeltaIOManager
from ray_assets.metadata import materialization_metadata, partition_metadata
from ray_assets.partition_slice import PartitionColumn, _resolve_columns, empty_selection_message

DEFAULT_IO_MANAGER_KEY = "delta_io_manager"
RAY_RESOURCE_KEY = "ray"
KINDS = {"ray", "deltalake"}
DEFAULT_POOL = "ray"
"""The Dagster concurrency pool of every `ray_asset` step unless the asset names another: one
pool for the Ray cluster the code location runs on, so the instance's limit for it bounds how
many pipelines share that cluster's CPUs and object store at once. `RAY_ASSETS_POOL` renames it,
e.g. for two code locations on one Dagster instance that run on different clusters."""
_USE_DEFAULT_POOL: Any = object()


def ray_asset(
    compute_fn: Callable[..., Any] | None = None,
    *,
    partition_column: PartitionColumn | None = None,
    partitions_def: dg.PartitionsDefinition | None = None,
    io_manager_key: str = DEFAULT_IO_MANAGER_KEY,
    kinds: set[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    backfill_policy: dg.BackfillPolicy | None = None,
    required_resource_keys: set[str] | None = None,
    pool: str | None = _USE_DEFAULT_POOL,
    **asset_kwargs: Any,
) -> Any:
    """Define an asset whose body returns a `ray.data.Dataset` (or a pyarrow Table / pandas DataFrame).

    `partition_column` names the table column that holds the partition key (for
    multi-partitions, a dict of dimension name to column). Assets default to
    `BackfillPolicy.single_run()`, so a backfill of N partitions is one run and one commit;
    unpartitioned ones too, because Dagster refuses a `--partition-range` run (and a single-run
    backfill) whose selection holds an asset without it. Steps run in the concurrency `pool`
    `$RAY_ASSETS_POOL` or `"ray"` (`DEFAULT_POOL`) unless `pool` names another (`None`: no pool),
    so the instance's pool limit bounds the pipelines running on one Ray cluster at once.
    Every other `dg.asset` argument passes through. The asset requires the `ray` resource
    (`RayResource`) and stores through the IO manager at `io_manager_key` (`DeltaIOManager`).
    """

    def decorate(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        name = asset_kwargs.pop("name", None) or fn.__name__
        _check_partition_column(name, partitions_def, partition_column)
        signature = inspect.signature(fn)
        parameters = list(signature.parameters.values())
        takes_context = bool(parameters) and parameters[0].name == "context"
        resource_names = resource_param_names(fn)
        hints = _resolved_hints(fn)
        inputs = [
            p.replace(annotation=hints.get(p.name, inspect.Parameter.empty))
            for p in parameters[1 if takes_context else 0 :]
            if p.name not in resource_names
        ]

        @functools.wraps(fn)
        def body(context: dg.AssetExecutionContext, **kwargs: Any) -> dg.MaterializeResult:
            _refuse_empty_selection(context)
            for resource_name in resource_names:
                kwargs[resource_name] = getattr(context.resources, resource_name)
            getattr(context.resources, RAY_RESOURCE_KEY)  # Ray is up before the body runs
            output = fn(context, **kwargs) if takes_context else fn(**kwargs)
            if isinstance(output, dg.MaterializeResult):
                return output
            return _store(context, output, io_manager_key, partition_column)

        context_parameter = inspect.Parameter(
            "context",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=dg.AssetExecutionContext,
        )
        body.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[context_parameter, *inputs], return_annotation=dg.MaterializeResult
        )
        body.__annotations__ = {
            "context": dg.AssetExecutionContext,
            **{p.name: p.annotation for p in inputs if p.annotation is not inspect.Parameter.empty},
            "return": dg.MaterializeResult,
        }
        del body.__wrapped__  # Dagster must see the signature above, not the user's

        definition_metadata = dict(metadata or {})
        if partition_column is not None:
            definition_metadata["partition_expr"] = (
                dict(partition_column)
                if isinstance(partition_column, Mapping)
                else partition_column
            )
        policy = backfill_policy or dg.BackfillPolicy.single_run()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            return dg.asset(
                name=name,
                partitions_def=partitions_def,
                io_manager_key=io_manager_key,
                kinds=KINDS | set(kinds or ()),
                metadata=definition_metadata,
                backfill_policy=policy,
                pool=default_pool() if pool is _USE_DEFAULT_POOL else pool,
                required_resource_keys=set(required_resource_keys or ())
                | set(resource_names)
                | {RAY_RESOURCE_KEY, io_manager_key},
                **asset_kwargs,
            )(body)

    return decorate(compute_fn) if compute_fn is not None else decorate


def default_pool() -> str:
    """The pool of `ray_asset` steps that name none: `$RAY_ASSETS_POOL`, else `DEFAULT_POOL`."""
    return os.environ.get("RAY_ASSETS_POOL") or DEFAULT_POOL


def _resolved_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The function's annotations as objects, resolved in the user's module.

    Under `from __future__ import annotations` they are strings, and Dagster would resolve them
    in this module (the wrapper's) instead of the user's; an unresolvable one (a name imported
    under TYPE_CHECKING) is dropped, so the input gets the default load type.
    """
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - resolve what can be resolved, one by one
        hints = {}
        for name, annotation in getattr(fn, "__annotations__", {}).items():
            try:
                hints[name] = typing.get_type_hints(
                    type(
                        "_",
                        (),
                        {"__annotations__": {name: annotation}, "__module__": fn.__module__},
                    )
                )[name]
            except Exception:  # noqa: BLE001
                continue
        return hints


def _check_partition_column(
    name: str,
    partitions_def: dg.PartitionsDefinition | None,
    partition_column: PartitionColumn | None,
) -> None:
    """Refuse a missing or ill-shaped partition column when the asset is defined, not when it runs."""
    if partitions_def is None:
        if partition_column is not None:
            raise PartitionColumnError(
                f"Asset '{name}' names partition_column={partition_column!r} but has no partitions_def."
            )
        return
    _resolve_columns(partitions_def, partition_column, name)


def _refuse_empty_selection(context: dg.AssetExecutionContext) -> None:
    """A reversed or empty range fails before the body runs: it would commit an empty version."""
    if context.assets_def.partitions_def is None or context.partition_keys:
        return
    raise PartitionKeyError(
        empty_selection_message(context.asset_key.to_user_string(), context.partition_key_range)
    )


def _store(
    context: dg.AssetExecutionContext,
    output: Any,
    io_manager_key: str,
    partition_column: PartitionColumn | None,
) -> dg.MaterializeResult:
    io_manager = getattr(context.resources, io_manager_key)
    asset_key = context.asset_key
    if hasattr(io_manager, "materialize_output"):  # another store (SqlIOManager)
        return io_manager.materialize_output(context, output, partition_column)
    if not isinstance(io_manager, DeltaIOManager):
        raise TypeError(
            f"Asset '{asset_key.to_user_string()}' stores through resource '{io_manager_key}', "
            f"which must be a DeltaIOManager or SqlIOManager, not {type(io_manager).__name__}."
        )
    partitions_def = context.assets_def.partitions_def
    keys = list(context.partition_keys) if partitions_def is not None else None
    result = io_manager.write_asset(
        output,
        asset_key=asset_key,
        partitions_def=partitions_def,
        partition_keys=keys,
        partition_column=partition_column,
        write_id=context.run_id,
        dynamic_partitions_store=context.instance,
        definition_metadata=context.assets_def.metadata_by_key.get(asset_key),
    )
    for warning in result.warnings:
        context.log.warning(f"{asset_key.to_user_string()}: {warning}")
    for key, stats in result.partitions.items():
        context.add_asset_metadata(partition_metadata(stats), partition_key=key)
    verb = "committed" if result.committed else "was already committed by this run at"
    context.log.info(
        f"{asset_key.to_user_string()}: {result.rows_written} rows in {result.files_written} files "
        f"{verb} version {result.table_version} of {result.table_uri} "
        f"({result.rows_per_second:,.0f} rows/s)"
    )
    return dg.MaterializeResult(metadata=materialization_metadata(result, asset_key))
