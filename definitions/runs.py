"""Running the reference pipeline in-process: the dimension, then a range of days in one run.

Shared by the demo, the overhead benchmark and the tests, so that all three run the pipeline the
way a single-run backfill does (range tags, one Delta commit per asset).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from definitions.assets import ASSETS, DAILY_ASSETS
from ray_assets._compat import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG


def materialize_days(
    resources: Mapping[str, Any],
    days: Sequence[str],
    *,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
) -> list[dg.ExecuteInProcessResult]:
    """Materialize `customers`, then the daily assets for `days[0]...days[-1]` as one run.

    Returns both runs' results; the daily run is not started when the dimension fails.
    """
    dimension = [asset for asset in ASSETS if asset not in DAILY_ASSETS]
    customers = dg.materialize(
        dimension, resources=resources, instance=instance, raise_on_error=raise_on_error
    )
    if not customers.success:
        return [customers]
    daily_run = dg.materialize(
        ASSETS,
        selection=DAILY_ASSETS,
        resources=resources,
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: days[0], ASSET_PARTITION_RANGE_END_TAG: days[-1]},
        raise_on_error=raise_on_error,
    )
    return [customers, daily_run]
