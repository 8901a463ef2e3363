"""A running write reports its progress in the Dagster run log; Ray Data's terminal noise stays
out of the process's output."""

import re
import time

import dagster as dg
import numpy as np

from ray_assets import DeltaIOManager, RayResource, ray_asset

days = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-05")


@ray_asset(partitions_def=days, partition_column="order_date")
def slow_orders(context: dg.AssetExecutionContext):
    import ray.data

    day = context.partition_key

    def work(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        deadline = time.monotonic() + 0.4  # a block takes 0.4 s of CPU: a pipeline of seconds
        while time.monotonic() < deadline:
            pass
        return {"order_id": batch["id"], "order_date": np.full(len(batch["id"]), day, dtype=object)}

    return ray.data.range(60_000, override_num_blocks=6).map_batches(work)


def test_a_running_write_logs_rows_bytes_and_rates_then_a_final_line(
    ray_session, tmp_path, capfd
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    try:
        result = dg.materialize(
            [slow_orders],
            partition_key="2024-01-03",
            resources={
                "ray": RayResource(address=ray_session, progress_interval_s=0.5),
                "delta_io_manager": DeltaIOManager(root_uri=str(tmp_path)),
            },
            instance=instance,
        )
    finally:
        RayResource(address=ray_session).configure_data_context()  # the default cadence again
    assert result.success
    lines = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.dagster_event is None and "asset 'slow_orders'" in entry.user_message
    ]
    during = [line for line in lines if "wrote" not in line]
    done = [line for line in lines if "wrote" in line]
    assert during, lines  # at least one line while it ran (2.4 s of work on 2 CPUs, every 0.5 s)
    assert all("partition '2024-01-03'" in line for line in lines), lines
    assert all(re.search(r"MapBatches\(work\)->Write: \d/6 tasks done", line) for line in during)
    # the finished write: what its tasks reported
    assert len(done) == 1
    assert re.search(r"wrote 60\.0k rows \([\d.]+ KiB\) in [\d.]+ s, [\d.]+k? rows/s", done[0])
    assert done[0].endswith("table version 0"), done

    captured = capfd.readouterr()
    terminal = captured.out + captured.err
    for noise in ("Starting execution of Dataset", "Progress bars disabled", "available CPUs"):
        assert noise not in terminal, noise


@ray_asset(partitions_def=days, partition_column="order_date")
def small_orders(context: dg.AssetExecutionContext):
    import ray.data

    return ray.data.from_items([{"order_id": 1, "order_date": context.partition_key}])


def materialization_metadata_of(result: dg.ExecuteInProcessResult) -> dict:
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata


def test_the_ray_dashboard_is_linked_in_the_metadata_when_ray_has_one(
    ray_session, tmp_path, monkeypatch
) -> None:
    """The test session's Ray has no dashboard (`ray[data]` alone cannot run one): no link.
    A dashboard Ray reports, here through Ray's own override for a dashboard behind a proxy,
    is linked from every materialization."""
    resources = {
        "ray": RayResource(address=ray_session),
        "delta_io_manager": DeltaIOManager(root_uri=str(tmp_path)),
    }
    result = dg.materialize([small_orders], partition_key="2024-01-02", resources=resources)
    assert "ray/dashboard" not in materialization_metadata_of(result)

    monkeypatch.setenv("RAY_OVERRIDE_DASHBOARD_URL", "https://ray.example.com:8265")
    result = dg.materialize([small_orders], partition_key="2024-01-03", resources=resources)
    link = materialization_metadata_of(result)["ray/dashboard"]
    assert link == dg.MetadataValue.url("https://ray.example.com:8265")
