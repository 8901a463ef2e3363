"""Alerts on failed runs, delivered to a real HTTP server on loopback: what a failed run's alert
says (assets, partition, error, link), retries, and a webhook token that never leaks."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from ray_assets import AlertSink, DeltaIOManager, RayResource, ray_asset, run_failure_alerts
from ray_assets.alerts import AlertDeliveryError
from tests.local_servers import Webhook

TOKEN = Webhook.TOKEN
days = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-05")


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()


@ray_asset(partitions_def=days, partition_column="order_date")
def broken_orders(context: dg.AssetExecutionContext):
    import ray.data

    def explode(table: pa.Table) -> pa.Table:
        raise ValueError("upstream sent a malformed order 45")

    rows = pa.table({"order_date": [context.partition_key], "order_id": [45]})
    return ray.data.from_arrow(rows).map_batches(explode, batch_format="pyarrow")


def failed_run(ray_session: str, tmp_path) -> tuple[dg.DagsterInstance, dg.DagsterRun]:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [broken_orders],
        partition_key="2024-01-02",
        resources={
            "ray": RayResource(address=ray_session),
            "delta_io_manager": DeltaIOManager(root_uri=str(tmp_path / "tables")),
        },
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    return instance, result.dagster_run


def evaluate(sensor: dg.SensorDefinition, instance, run, sink: AlertSink) -> Any:
    failure = next(
        entry.dagster_event
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    )
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        resources={"alerts": sink},
    ).for_run_failure()
    return sensor(context)


def test_a_failed_run_is_sent_with_its_asset_partition_error_and_link(
    ray_session, tmp_path, webhook
) -> None:
    instance, run = failed_run(ray_session, tmp_path)
    sink = AlertSink(webhook_url=webhook.url, dagster_url="http://dagster.internal:3000/")
    evaluate(run_failure_alerts(), instance, run, sink)

    assert len(webhook.bodies) == 1
    alert = webhook.bodies[0]
    assert alert["run_id"] == run.run_id
    assert alert["assets"] == ["broken_orders"]
    assert alert["partitions"] == "2024-01-02"
    assert "upstream sent a malformed order 45" in alert["error"]
    assert "2024-01-02" in alert["error"]  # the pipeline's own error names the partition
    assert alert["run_url"] == f"http://dagster.internal:3000/runs/{run.run_id}"
    assert alert["text"].startswith(f"Run {run.run_id[:8]} of broken_orders [2024-01-02] failed")


def test_a_webhook_that_fails_once_gets_the_alert_on_the_retry(
    ray_session, tmp_path, webhook
) -> None:
    instance, run = failed_run(ray_session, tmp_path)
    webhook.statuses = [503]
    evaluate(run_failure_alerts(), instance, run, AlertSink(webhook_url=webhook.url, attempts=2))
    assert [body["run_id"] for body in webhook.bodies] == [run.run_id]


def test_an_undeliverable_alert_fails_the_tick_without_the_webhook_token(
    ray_session, tmp_path, webhook, capfd
) -> None:
    instance, run = failed_run(ray_session, tmp_path)
    webhook.statuses = [404]  # a client error: not retried
    with pytest.raises(AlertDeliveryError, match="webhook at 127.0.0.1 .* HTTP 404") as raised:
        evaluate(
            run_failure_alerts(), instance, run, AlertSink(webhook_url=webhook.url, attempts=3)
        )
    assert TOKEN not in str(raised.value) and webhook.bodies == []
    closed = AlertSink(webhook_url=f"http://127.0.0.1:1/hooks/{TOKEN}", attempts=1)
    with pytest.raises(AlertDeliveryError, match="webhook at 127.0.0.1") as raised:
        evaluate(run_failure_alerts(), instance, run, closed)
    assert TOKEN not in str(raised.value)
    captured = capfd.readouterr()
    assert TOKEN not in captured.out + captured.err


def test_the_reference_location_alerts_by_default() -> None:
    from definitions import defs

    sensor = defs.resolve_sensor_def("run_failure_alerts")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert isinstance(defs.resources["alerts"], AlertSink)
