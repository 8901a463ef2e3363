"""Alerts on failed runs: what failed (assets, partitions, error, a link to the run), sent to the
run's log and to a webhook.

A failed nightly backfill that nobody sees until a dashboard goes stale is the failure data
engineers fear most, so the reference location runs `run_failure_alerts` by default, with an
`AlertSink` under the resource key `alerts`. The sensor
is Dagster's `run_failure_sensor`: the daemon evaluates it for every failed run of the code
location, whatever launched the run (a schedule, a sensor, a backfill, the UI, the CLI).

The webhook gets one JSON document per failure (`FailureAlert.as_json`), the form chat tools'
incoming webhooks and incident tools accept through a small adapter; its URL often holds a
token, so it comes from the environment (`dg.EnvVar`) and never appears in a log or an error.
A delivery that fails fails the sensor's tick, which Dagster shows and retries: an alert is
never silently dropped.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from ray_assets.errors import RayAssetsError

_MAX_ERROR_CHARS = 4_000
_LAUNCHER_TAGS = (
    "dagster/schedule_name",
    "dagster/sensor_name",
    "dagster/backfill",
    "dagster/parent_run_id",
)


class AlertDeliveryError(RayAssetsError):
    """The webhook did not take an alert (the message names its host, never its full URL)."""


@dataclass(frozen=True)
class FailureAlert:
    """One failed run, as an on-call engineer needs it."""

    run_id: str
    job_name: str
    assets: list[str]
    partitions: str | None
    """The run's partition, `first...last` for a range run, or None when unpartitioned."""
    error: str
    run_url: str
    failed_at: float
    tags: dict[str, str] = field(default_factory=dict)
    """The run's launcher tags: which schedule, sensor or backfill started it."""

    @property
    def summary(self) -> str:
        what = ", ".join(self.assets) or self.job_name
        where = f" [{self.partitions}]" if self.partitions else ""
        return f"Run {self.run_id[:8]} of {what}{where} failed: {self.error.splitlines()[0]}"

    def as_json(self) -> dict[str, Any]:
        return {"text": f"{self.summary}\n{self.run_url}", **asdict(self)}


def failure_alert(
    run: dg.DagsterRun,
    error: str | None,
    base_url: str,
    failed_at: float | None = None,
    planned_assets: Sequence[dg.AssetKey] = (),
) -> FailureAlert:
    """The alert for a failed `run` whose failure said `error`; `planned_assets` names the
    run's assets when the run has no asset selection (a job that materializes assets)."""
    tags = run.tags
    if "dagster/asset_partition_range_start" in tags:
        partitions = (
            f"{tags['dagster/asset_partition_range_start']}..."
            f"{tags['dagster/asset_partition_range_end']}"
        )
    else:
        partitions = tags.get("dagster/partition")
    assets = sorted(key.to_user_string() for key in (run.asset_selection or planned_assets))
    launcher = {key: value for key, value in tags.items() if key in _LAUNCHER_TAGS}
    text = (error or "the run failed without an error message").strip()
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS] + " [...]"
    return FailureAlert(
        run_id=run.run_id,
        job_name=run.job_name,
        assets=assets,
        partitions=partitions,
        error=text,
        run_url=f"{base_url.rstrip('/')}/runs/{run.run_id}",
        failed_at=failed_at if failed_at is not None else time.time(),
        tags=launcher,
    )


class AlertSink(dg.ConfigurableResource):
    """Where failure alerts go: always the sensor's log, and a webhook when `webhook_url` is set.

    `webhook_url` (often holding a token: give it as `dg.EnvVar`) receives a POST of the alert as
    JSON; `dagster_url` is the webhook's link target for the run (the UI's address).
    """

    webhook_url: str | None = Field(
        default=None, description="POST each alert here as JSON (secret: use dg.EnvVar)."
    )
    dagster_url: str = Field(
        default="http://127.0.0.1:3000", description="The Dagster UI's address, for run links."
    )
    timeout_s: float = Field(default=10.0, description="Seconds per delivery attempt.")
    attempts: int = Field(default=3, ge=1, description="Delivery attempts before the tick fails.")

    def send(self, alert: FailureAlert, log: Any) -> None:
        log.error(f"ALERT {alert.summary} ({alert.run_url})")
        if self.webhook_url:
            self._post(alert)

    def _post(self, alert: FailureAlert) -> None:
        body = json.dumps(alert.as_json()).encode()
        request = urllib.request.Request(
            self.webhook_url or "",
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": "ray_assets-alerts"},
            method="POST",
        )
        host = urlsplit(self.webhook_url or "").hostname or "the webhook"
        problem = "no attempt"
        for attempt in range(1, self.attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return
                    problem = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                problem = f"HTTP {error.code}"
                if 400 <= error.code < 500 and error.code != 429:
                    break  # the webhook refuses this alert: asking again will not help
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                problem = type(reason).__name__ if not isinstance(reason, str) else "unreachable"
            if attempt < self.attempts:
                time.sleep(min(2.0**attempt, 10.0))
        raise AlertDeliveryError(
            f"the alert for run {alert.run_id} could not be delivered to the webhook at {host} "
            f"after {self.attempts} attempt(s): {problem}. The run's failure is in Dagster's "
            "run log; the sensor tick fails so that the alert is retried."
        )


def run_failure_alerts(
    name: str = "run_failure_alerts",
    *,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations: bool = False,
) -> dg.SensorDefinition:
    """A run-failure sensor that sends each failed run of the code location to the
    `AlertSink` under the resource key `alerts`; running by default, since an alert nobody
    turned on alerts nobody."""

    @dg.run_failure_sensor(
        name=name,
        default_status=default_status,
        monitor_all_code_locations=monitor_all_code_locations,
        description="Sends every failed run (assets, partitions, error, link) to the alert sink.",
    )
    def _alert(context: dg.RunFailureSensorContext, alerts: AlertSink) -> None:
        run_id = context.dagster_run.run_id
        record = context.instance.get_run_record_by_id(run_id)
        alert = failure_alert(
            context.dagster_run,
            _first_error(context.instance, run_id) or context.failure_event.message,
            alerts.dagster_url,
            failed_at=record.end_time if record is not None else None,
            planned_assets=_planned_assets(context.instance, run_id),
        )
        alerts.send(alert, context.log)

    return _alert


def _first_error(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The first failed step's error, with its causes (the run's own failure event only says
    which steps failed); else the run failure's error (a run worker that died, a refused
    launch)."""
    for event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
        for entry in instance.all_logs(run_id, of_type=event_type):
            data = getattr(entry.dagster_event, "event_specific_data", None)
            error = getattr(data, "error", None)
            messages = []
            while error is not None:
                # Dagster's own wrapper ("Error occurred while executing op ...") says less
                # than its cause, which names the asset, the partition and what went wrong
                if not error.cls_name.startswith("DagsterExecution"):
                    messages.append(error.message.strip())
                error = error.cause
            if messages:
                return "\n".join(messages)
            if entry.dagster_event is not None and entry.dagster_event.message:
                return entry.dagster_event.message
    return None


def _planned_assets(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetKey]:
    return sorted(
        {
            entry.dagster_event.asset_key
            for entry in instance.all_logs(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            )
            if entry.dagster_event is not None and entry.dagster_event.asset_key is not None
        },
        key=lambda key: key.to_user_string(),
    )
