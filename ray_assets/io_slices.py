"""Dagster's IO contexts turned into `PartitionSlice`s, for every IO manager of ray_assets.

`DeltaIOManager` and `SqlIOManager` follow the same conventions (`partition_expr` metadata on
the producing asset names the partition column(s); a range run writes all its keys at once),
so the slice a materialization writes and the slice an input loads are built here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from ray_assets.partition_slice import PartitionColumn, PartitionSlice


def slice_to_write(
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition | None,
    partition_keys: Sequence[str] | None,
    partition_column: PartitionColumn | None,
    dynamic_partitions_store: Any = None,
) -> PartitionSlice:
    """The exact partitions one materialization of `asset_key` replaces."""
    return PartitionSlice.from_keys(
        partitions_def,
        partition_keys if partitions_def is not None else None,
        partition_column,
        asset_key=asset_key.to_user_string(),
        dynamic_partitions_store=dynamic_partitions_store,
    )


def output_partitions(
    context: dg.OutputContext,
) -> tuple[dg.PartitionsDefinition | None, list[str] | None]:
    """The partitions definition and keys of an output (None, None when unpartitioned)."""
    if not context.has_asset_partitions:
        return None, None
    return context.asset_partitions_def, list(context.asset_partition_keys)


def slice_to_load(context: dg.InputContext) -> PartitionSlice:
    """The partitions an input loads, in the upstream asset's partition column(s). A mapping
    that selects no partition is the caller's to handle first (`from_keys` refuses it)."""
    name = context.asset_key.to_user_string()
    if not context.has_asset_partitions:
        return PartitionSlice.unpartitioned(name)
    upstream = context.upstream_output
    upstream_metadata = (upstream.definition_metadata if upstream else None) or {}
    return PartitionSlice.from_keys(
        context.asset_partitions_def,
        list(context.asset_partition_keys),
        upstream_metadata.get("partition_expr"),
        asset_key=name,
        dynamic_partitions_store=instance_of(context),
    )


def instance_of(context: Any) -> Any:
    """The run's Dagster instance (it resolves dynamic partitions), or None outside a run."""
    try:
        return context.instance
    except Exception:  # noqa: BLE001 - contexts built outside a run have no instance
        try:
            return context.step_context.instance
        except Exception:  # noqa: BLE001
            return None
