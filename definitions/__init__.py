"""The reference code location: a daily orders ETL built on ray_assets.

`dagster dev -w workspace.yaml` and `dagster asset materialize -m definitions ...` load `defs`.
The environment picks the resources (`RAY_ASSETS_ENV=local`, the default, or `cluster`; see
`resources/`). Ray parallelises inside each step, so steps run in the run's own process
(`in_process_executor`): a second process per step would only pay Ray's start-up again.
"""

from __future__ import annotations

import os

import dagster as dg

from definitions.assets import ASSETS, DAILY_ASSETS, daily
from definitions.landing import landed_orders, landing_folder, landing_sensor
from resources import resources_for

daily_orders_job = dg.define_asset_job(
    "daily_orders",
    selection=dg.AssetSelection.assets(*DAILY_ASSETS),
    partitions_def=daily,
    description="Raw orders of a day (or a range of days) through to revenue per region.",
)
customers_job = dg.define_asset_job(
    "refresh_customers",
    selection=dg.AssetSelection.assets("customers"),
    description="Reload the customer dimension.",
)

follow_upstream = dg.AutomationConditionSensorDefinition(
    "follow_upstream",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Evaluates the assets' automation conditions: downstream days follow upstream.",
)

defs = dg.Definitions(
    assets=[*ASSETS, landing_folder, landed_orders],
    sensors=[landing_sensor, follow_upstream],
    jobs=[daily_orders_job, customers_job],
    schedules=[
        dg.ScheduleDefinition(job=customers_job, cron_schedule="0 1 * * *"),
        dg.build_schedule_from_partitioned_job(daily_orders_job, hour_of_day=2),
    ],
    resources=resources_for(os.environ.get("RAY_ASSETS_ENV", "local")),
    executor=dg.in_process_executor,
)
