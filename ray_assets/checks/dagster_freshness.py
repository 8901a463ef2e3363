"""Dagster's freshness checks for the assets that declare `checks.freshness(...)`.

`ray_asset` turns `checks.freshness(...)` into the asset's `FreshnessPolicy` (Dagster evaluates
it and shows it on the asset). `freshness_checks` adds Dagster's freshness *asset checks* for the
same assets, with the sensor that runs them, for teams that alert on check results: a
time-partitioned asset is checked for its latest complete partition by the deadline, any other
for a materialization within `fail_after`.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from typing import Any

import dagster as dg

FRESHNESS_KEY = "ray_assets/freshness"
"""Definition metadata key where `ray_asset` records an asset's declared freshness."""


def freshness_record(freshness: Any) -> dict[str, Any]:
    """What `ray_asset` keeps of a `checks.Freshness` in the asset's metadata."""
    return {
        "fail_after_s": freshness.fail_after.total_seconds(),
        "deadline_cron": freshness.deadline_cron,
        "timezone": freshness.timezone,
    }


def freshness_checks(
    assets: Sequence[dg.AssetsDefinition], *, sensor_name: str = "freshness_checks_sensor"
) -> list[Any]:
    """Dagster freshness checks for each of `assets` that declares a freshness, and one sensor
    that evaluates them (started in the UI, or `default_status` as Dagster's own)."""
    with warnings.catch_warnings():
        # Dagster 1.13 prefers the FreshnessPolicy (which ray_asset sets too) and calls these
        # builders superseded; they remain the way to get freshness as check results.
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        found = _checks(assets)
        if not found:
            return []
        sensor = dg.build_sensor_for_freshness_checks(freshness_checks=found, name=sensor_name)
    return [*found, sensor]


def _checks(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetChecksDefinition]:
    found: list[dg.AssetChecksDefinition] = []
    for asset in assets:
        for key in asset.keys:
            record = (asset.metadata_by_key.get(key) or {}).get(FRESHNESS_KEY)
            if not record:
                continue
            fail_after = dt.timedelta(seconds=record["fail_after_s"])
            partitions_def = asset.partitions_def
            if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
                found.extend(
                    dg.build_time_partition_freshness_checks(
                        assets=[key],
                        deadline_cron=record["deadline_cron"] or partitions_def.get_cron_schedule(),
                        timezone=record["timezone"],
                    )
                )
            else:
                found.extend(
                    dg.build_last_update_freshness_checks(
                        assets=[key],
                        lower_bound_delta=fail_after,
                        deadline_cron=record["deadline_cron"],
                        timezone=record["timezone"],
                    )
                )
    return found
