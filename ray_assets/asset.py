"""`ray_asset`: `dg.asset` for functions that return a lazy Ray pipeline.

The asset body composes the pipeline; `ray_asset` then streams it into the asset's table itself
rather than handing it to the IO manager, because only the body can attach metadata to each
partition of a range run (`context.add_asset_metadata(..., partition_key=k)`; an IO manager
cannot). Either way the commit is decided in one place: the IO manager's `write_asset` -> the
store's `write` (`DeltaStore` or `ParquetStore`). Downstream assets load the table through the IO manager as usual.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from ray_assets._compat import resource_param_names
from ray_assets.checks import Check, Freshness
from ray_assets.checks.dagster_events import check_results, check_specs, partition_evaluations
from ray_assets.checks.gate import CheckResults
from ray_assets.errors import (
    CheckFailedError,
    PartitionColumnError,
    PartitionKeyError,
    RayAssetsError,
)
from ray_assets.io_manager import TableIOManager
from ray_assets.metadata import (
    SCHEMA_EVOLUTION_KEY,
    declared_column_schema,
    partition_metadata,
    shared_metadata,
    summary_metadata,
    summary_partition,
)
from ray_assets.partition_slice import PartitionColumn, _resolve_columns, empty_selection_message
from ray_assets.storage.schema_evolution import SchemaEvolution, refuse_unknown_policy

DEFAULT_IO_MANAGER_KEY = "delta_io_manager"
COLUMN_SCHEMA_KEY = "dagster/column_schema"
COLUMN_LINEAGE_ARG_KEY = "column_lineage"
RAY_RESOURCE_KEY = "ray"
KINDS = {"ray"}
STORAGE_KINDS = {"deltalake", "parquet", "postgres", "snowflake", "bigquery", "sqlite", "duckdb"}
"""Kinds that name where the table lives; "deltalake" is assumed unless the asset gives one."""
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
    checks: Sequence[Check | Freshness] = (),
    schema_evolution: SchemaEvolution | None = None,
    columns: Mapping[str, str] | Sequence[dg.TableColumn] | None = None,
    column_lineage: Mapping[str, Sequence[Any]] | None = None,
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

    `checks` (`ray_assets.checks`) become the asset's Dagster checks, decided before the commit
    from what the write already has in hand: a failed blocking check commits nothing and fails
    the run; in a range run each partition gets its own result. A `checks.freshness(...)` sets
    the asset's Dagster freshness policy. `schema_evolution` says what a write may change in
    the table's schema (`strict`, `add_columns`, `widen`, `overwrite`; the IO manager's
    setting when None). `columns` describes the columns (name -> description, or
    `dg.TableColumn`s; a "Columns:" section of the docstring works too) for the UI's column
    table; `column_lineage` names each column's upstream columns (`{"amount_usd":
    ["orders.amount", "fx.rate"]}`; columns named as in an upstream input are derived).
    Every other `dg.asset` argument passes through. The asset requires the `ray` resource
    (`RayResource`) and stores through the IO manager at `io_manager_key` (`DeltaIOManager`).
    """

    def decorate(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        name = asset_kwargs.pop("name", None) or fn.__name__
        _check_partition_column(name, partitions_def, partition_column)
        asset_key = _asset_key(name, asset_kwargs)
        value_checks = [check for check in checks if isinstance(check, Check)]
        freshness = [check for check in checks if isinstance(check, Freshness)]
        _refuse_odd_checks(name, checks, value_checks, freshness)
        evolution = None if schema_evolution is None else refuse_unknown_policy(schema_evolution)
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
        def body(context: dg.AssetExecutionContext, **kwargs: Any) -> Iterator[Any]:
            _refuse_empty_selection(context)
            for resource_name in resource_names:
                kwargs[resource_name] = getattr(context.resources, resource_name)
            getattr(context.resources, RAY_RESOURCE_KEY)  # Ray is up before the body runs
            output = fn(context, **kwargs) if takes_context else fn(**kwargs)
            if isinstance(output, dg.MaterializeResult):
                yield output
                return
            yield from _store(context, output, io_manager_key, partition_column, value_checks)

        context_parameter = inspect.Parameter(
            "context",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=dg.AssetExecutionContext,
        )
        body.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[context_parameter, *inputs], return_annotation=inspect.Signature.empty
        )
        body.__annotations__ = {
            "context": dg.AssetExecutionContext,
            **{p.name: p.annotation for p in inputs if p.annotation is not inspect.Parameter.empty},
        }
        del body.__wrapped__  # Dagster must see the signature above, not the user's

        definition_metadata = dict(metadata or {})
        declared = declared_column_schema(definition_metadata, columns, fn.__doc__)
        if declared is not None:
            definition_metadata[COLUMN_SCHEMA_KEY] = declared
        if evolution is not None:
            definition_metadata[SCHEMA_EVOLUTION_KEY] = evolution
        if column_lineage is not None:
            definition_metadata[COLUMN_LINEAGE_ARG_KEY] = _lineage_text(name, column_lineage)
        if partition_column is not None:
            definition_metadata["partition_expr"] = (
                dict(partition_column)
                if isinstance(partition_column, Mapping)
                else partition_column
            )
        policy = backfill_policy or dg.BackfillPolicy.single_run()
        specs = [
            *(asset_kwargs.pop("check_specs", None) or ()),
            *check_specs(value_checks, asset_key, partitions_def),
        ]
        if freshness:
            if asset_kwargs.get("freshness_policy") is not None:
                raise ValueError(
                    f"Asset '{name}': give checks.freshness(...) or freshness_policy=, not both"
                )
            from ray_assets.checks.dagster_freshness import FRESHNESS_KEY, freshness_record

            asset_kwargs["freshness_policy"] = freshness[0].policy()
            definition_metadata[FRESHNESS_KEY] = freshness_record(freshness[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            return dg.asset(
                name=name,
                partitions_def=partitions_def,
                io_manager_key=io_manager_key,
                kinds=_kinds(kinds),
                metadata=definition_metadata,
                backfill_policy=policy,
                pool=default_pool() if pool is _USE_DEFAULT_POOL else pool,
                required_resource_keys=set(required_resource_keys or ())
                | set(resource_names)
                | {RAY_RESOURCE_KEY, io_manager_key},
                check_specs=specs or None,
                **asset_kwargs,
            )(body)

    return decorate(compute_fn) if compute_fn is not None else decorate


def _asset_key(name: str, asset_kwargs: Mapping[str, Any]) -> dg.AssetKey:
    """The key `dg.asset` will give the asset (its checks must name it)."""
    key = asset_kwargs.get("key")
    if key is not None:
        return dg.AssetKey.from_coercible(key)
    prefix = asset_kwargs.get("key_prefix") or []
    prefix = [prefix] if isinstance(prefix, str) else list(prefix)
    return dg.AssetKey([*prefix, name])


def _refuse_odd_checks(
    name: str, given: Sequence[Any], value_checks: Sequence[Check], freshness: Sequence[Freshness]
) -> None:
    odd = [item for item in given if not isinstance(item, (Check, Freshness))]
    if odd:
        raise TypeError(
            f"Asset '{name}': checks= takes checks from ray_assets.checks (not_null, unique, "
            f"between, ...), not {type(odd[0]).__name__}; pass Dagster AssetCheckSpecs as "
            "check_specs= instead."
        )
    if len(freshness) > 1:
        raise ValueError(f"Asset '{name}': give at most one checks.freshness(...)")
    names = [check.name for check in value_checks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"Asset '{name}': two checks share the name(s) {repeated}; give one of them name=..."
        )


def _lineage_text(name: str, lineage: Mapping[str, Sequence[Any]]) -> dict[str, list[str]]:
    """Declared column lineage as plain JSON (`"asset/key.column"` per upstream column)."""
    result = {}
    for column, upstreams in lineage.items():
        texts = []
        for upstream in upstreams:
            if isinstance(upstream, tuple) and len(upstream) == 2:
                key, upstream_column = upstream
                key = dg.AssetKey.from_coercible(key).to_user_string()
                texts.append(f"{key}.{upstream_column}")
            elif isinstance(upstream, str) and "." in upstream:
                texts.append(upstream)
            else:
                raise ValueError(
                    f"Asset '{name}': column_lineage[{column!r}] names {upstream!r}; name an "
                    "upstream column as 'asset.column' or ('asset', 'column')"
                )
        result[column] = texts
    return result


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


def _kinds(given: set[str] | None) -> set[str]:
    given = set(given or ())
    return KINDS | given | (set() if given & STORAGE_KINDS else {"deltalake"})


def _store(
    context: dg.AssetExecutionContext,
    output: Any,
    io_manager_key: str,
    partition_column: PartitionColumn | None,
    checks: Sequence[Check],
) -> Iterator[Any]:
    io_manager = getattr(context.resources, io_manager_key)
    asset_key = context.asset_key
    if hasattr(io_manager, "materialize_output"):  # another store (SqlIOManager)
        if checks:
            raise RayAssetsError(
                f"Asset '{asset_key.to_user_string()}' declares checks, which ray_assets decides "
                f"before a Delta commit, but it stores through '{io_manager_key}' "
                f"({type(io_manager).__name__}). Store it with a DeltaIOManager or ParquetIOManager, or check it in "
                "a Dagster @asset_check."
            )
        yield io_manager.materialize_output(context, output, partition_column)
        return
    if not isinstance(io_manager, TableIOManager):
        raise TypeError(
            f"Asset '{asset_key.to_user_string()}' stores through resource '{io_manager_key}', "
            f"which must be a DeltaIOManager, ParquetIOManager or SqlIOManager, not {type(io_manager).__name__}."
        )
    partitions_def = context.assets_def.partitions_def
    keys = list(context.partition_keys) if partitions_def is not None else None
    try:
        result = io_manager.write_asset(
            output,
            asset_key=asset_key,
            partitions_def=partitions_def,
            partition_keys=keys,
            partition_column=partition_column,
            write_id=context.run_id,
            dynamic_partitions_store=context.instance,
            definition_metadata=context.assets_def.metadata_by_key.get(asset_key),
            checks=checks,
            log=context.log,
        )
    except CheckFailedError as error:
        if isinstance(error.results, CheckResults):
            yield from partition_evaluations(error.results, asset_key)
        raise
    for warning in result.warnings:
        context.log.warning(f"{asset_key.to_user_string()}: {warning}")
    definition_metadata = context.assets_def.metadata_by_key.get(asset_key)
    upstream = io_manager.upstream_columns(list(context.assets_def.keys_by_input_name.values()))
    summary = summary_metadata(result, definition_metadata, upstream)
    summary_key = summary_partition(partitions_def, keys)
    for key, stats in result.partitions.items():
        context.add_asset_metadata(partition_metadata(stats), partition_key=key)
    if summary_key is not None:
        context.add_asset_metadata(summary, partition_key=summary_key)
    verb = "committed" if result.committed else "was already committed by this run at"
    context.log.info(
        f"{asset_key.to_user_string()}: {result.rows_written} rows in {result.files_written} files "
        f"{verb} version {result.table_version} of {result.table_uri} "
        f"({result.rows_per_second:,.0f} rows/s)"
    )
    summaries: list[dg.AssetCheckResult] = []
    if checks:
        results = CheckResults.from_record(checks, result.gate_record)
        single = keys is None or (len(keys) == 1 and not context.has_partition_key_range)
        evaluations, summaries = check_results(results, asset_key, per_partition=not single)
        yield from evaluations
        _log_warnings(context, results)
    shared = shared_metadata(result, asset_key)
    yield dg.MaterializeResult(
        metadata=shared if summary_key is not None else {**shared, **summary},
        check_results=summaries or None,
    )


def _log_warnings(context: dg.AssetExecutionContext, results: CheckResults) -> None:
    from ray_assets.checks.gate import failure_summary

    failed = results.failed(blocking=False)
    if failed:
        context.log.warning(
            f"{context.asset_key.to_user_string()}: committed with non-blocking check "
            f"failures: {failure_summary(failed)}"
        )
