"""A partition range as one run, from Python: what a single-run backfill and the CLI's
`dagster asset materialize --partition-range A...B` do.

`dagster.materialize()` takes one partition key, not a range (dagster#14905); Dagster runs a
range by tagging the run with its first and last key, exactly as the backfill daemon does.
These helpers give scripts, tests and notebooks that run without reaching for Dagster's
private tag names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from ray_assets._compat import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover the partition keys `first` to `last`, both included."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def materialize_partition_range(
    assets: Sequence[Any],
    first: str,
    last: str,
    *,
    selection: Any = None,
    resources: Mapping[str, Any] | None = None,
    instance: dg.DagsterInstance | None = None,
    tags: Mapping[str, str] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialize `assets` for the keys `first`...`last` in one run (one commit per asset).

    Args:
        assets: the assets (and source assets) of the run, as for `dagster.materialize`.
        first: the first partition key of the range.
        last: the last partition key, included.
        selection: the subset of `assets` to materialize (the rest load as inputs).
        resources: resources by key.
        instance: where the run is recorded (an ephemeral instance when None).
        tags: more run tags.
        raise_on_error: raise the step's error instead of returning a failed result.

    Example:
        materialize_partition_range(
            [orders, clean_orders], "2024-01-01", "2024-01-07", resources=resources
        )
    """
    return dg.materialize(
        assets,
        selection=selection,
        resources=resources,
        instance=instance,
        tags={**(tags or {}), **partition_range_tags(first, last)},
        raise_on_error=raise_on_error,
    )
