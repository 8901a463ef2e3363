"""What runs the reference pipeline without anyone launching it: jobs, schedules, automation.

* `daily_orders_schedule` materializes the latest finished day of the daily assets at 02:00 UTC
  (`RAY_ASSETS_DAILY_CRON` changes when). Its run key is the day, so a tick that finds the day
  already requested launches nothing: ticking more often never doubles a day.
* `refresh_customers` reloads the customer dimension at 01:00 UTC.
* `table_maintenance` (Sundays at 04:00 UTC) reclaims the files of killed runs, compacts small
  files and vacuums files replaced more than 7 days ago, in every Delta table of the pipeline
  (`ray_assets.maintenance`).
* `follow_upstream` evaluates the assets' automation conditions: downstream days follow upstream
  days materialized by anything else (a manual run, the landing sensor).
"""

from __future__ import annotations

import os

import dagster as dg

from definitions.assets import DAILY_ASSETS, DELTA_ASSETS, daily
from ray_assets.maintenance import table_maintenance_job

DEFAULT_DAILY_CRON = "0 2 * * *"

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


@dg.schedule(
    job=daily_orders_job,
    cron_schedule=os.environ.get("RAY_ASSETS_DAILY_CRON") or DEFAULT_DAILY_CRON,
    execution_timezone="UTC",
    description="The latest finished day of the daily assets, once per day.",
)
def daily_orders_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
        day = daily.get_last_partition_key()
    if day is None:
        return dg.SkipReason("no finished day yet")
    return dg.RunRequest(run_key=day, partition_key=day)


customers_schedule = dg.ScheduleDefinition(job=customers_job, cron_schedule="0 1 * * *")

follow_upstream = dg.AutomationConditionSensorDefinition(
    "follow_upstream",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Evaluates the assets' automation conditions: downstream days follow upstream.",
)

maintenance_job = table_maintenance_job(
    [*DELTA_ASSETS, "orders_scored", "landed_orders"]  # every table the DeltaIOManager keeps
)
maintenance_schedule = dg.ScheduleDefinition(job=maintenance_job, cron_schedule="0 4 * * 0")

JOBS = [daily_orders_job, customers_job, maintenance_job]
SCHEDULES = [daily_orders_schedule, customers_schedule, maintenance_schedule]
