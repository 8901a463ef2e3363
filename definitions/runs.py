"""Running the reference pipeline in-process: the dimension, then a range of days in one run.

Shared by the demo, the overhead benchmark and the tests, so that all three run the pipeline the
way a single-run backfill does (range tags, one Delta commit per asset).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from definitions.assets import ASSETS, DAILY_ASSETS
from definitions.models import MODEL_ASSETS
from ray_assets import materialize_partition_range


def materialize_days(
    resources: Mapping[str, Any],
    days: Sequence[str],
    *,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    with_models: bool = True,
) -> list[dg.ExecuteInProcessResult]:
    """Materialize `customers`, then the daily assets for `days[0]...days[-1]` as one run, with
    the return-risk model trained and the days scored at its end (unless not `with_models`).

    Returns both runs' results; the daily run is not started when the dimension fails.
    """
    models = list(MODEL_ASSETS) if with_models else []
    dimension = [asset for asset in ASSETS if asset not in DAILY_ASSETS]
    customers = dg.materialize(
        dimension, resources=resources, instance=instance, raise_on_error=raise_on_error
    )
    if not customers.success:
        return [customers]
    daily_run = materialize_partition_range(
        [*ASSETS, *models],
        days[0],
        days[-1],
        selection=[*DAILY_ASSETS, *models],
        resources=resources,
        instance=instance,
        raise_on_error=raise_on_error,
    )
    return [customers, daily_run]
