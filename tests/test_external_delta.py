"""A Delta table another system writes, as an observable source asset: observations report its
version as the data version, and a `ray_asset` reads it lazily, pruned and projected."""

import dagster as dg
import pyarrow as pa
import pytest

from ray_assets import DeltaIOManager, RayResource, external_delta_table, ray_asset
from ray_assets.errors import RayAssetsError

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")


def write_elsewhere(uri: str, days: list[str], rows: int, mode: str = "append") -> None:
    """What the other system does: write the table with deltalake directly."""
    from deltalake import write_deltalake

    table = pa.table(
        {
            "day": [d for d in days for _ in range(rows)],
            "id": list(range(rows * len(days))),
            "amount": [1.5] * (rows * len(days)),
            "note": ["x"] * (rows * len(days)),
        }
    )
    write_deltalake(uri, table, partition_by=["day"], mode=mode)


def observe(feed, resources, instance) -> dg.ExecuteInProcessResult:
    """What a schedule or the UI's "Observe" does: a run of a job that selects the source."""
    defs = dg.Definitions(
        assets=[feed],
        jobs=[dg.define_asset_job("observe_feed", selection=[feed.key])],
        resources=resources,
    )
    return defs.resolve_job_def("observe_feed").execute_in_process(instance=instance)


def partition_data_versions(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    return {
        observation.partition: observation.tags["dagster/data_version"]
        for observation in observations(result)
    }


def observations(result: dg.ExecuteInProcessResult) -> list[dg.AssetObservation]:
    return [
        event.event_specific_data.asset_observation
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    ]


def test_observations_track_the_version_and_downstream_reads_one_partition(
    ray_session, tmp_path
) -> None:
    uri = str(tmp_path / "partner" / "orders")
    write_elsewhere(uri, ["2024-01-01", "2024-01-02", "2024-01-03"], rows=10)
    feed = external_delta_table("orders_feed", uri, partitions_def=DAILY, partition_column="day")
    seen = {}

    @ray_asset(
        partitions_def=DAILY,
        partition_column="day",
        ins={"orders_feed": dg.AssetIn(metadata={"columns": ["id"]})},
    )
    def feed_copy(orders_feed):
        seen["files"] = orders_feed.input_files()
        return orders_feed

    resources = {
        "ray": RayResource(),
        "delta_io_manager": DeltaIOManager(root_uri=str(tmp_path / "ours")),
    }
    with dg.instance_for_test() as instance:
        first = observe(feed, resources, instance)
        write_elsewhere(uri, ["2024-01-04"], rows=5)
        second = observe(feed, resources, instance)
        copied = dg.materialize(
            [feed, feed_copy],
            selection=[feed_copy],
            partition_key="2024-01-02",
            resources=resources,
            instance=instance,
        )
    versions = [partition_data_versions(instance_events) for instance_events in (first, second)]
    assert set(versions[0]) == {"2024-01-01", "2024-01-02", "2024-01-03"}
    assert set(versions[1]) == {"2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"}
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):  # untouched days keep their version
        assert versions[0][day] == versions[1][day]
    assert copied.success
    assert all("day=2024-01-02" in path for path in seen["files"])  # pruned to the partition
    metadata = copied.asset_materializations_for_node("feed_copy")[0].metadata
    assert metadata["dagster/partition_row_count"].value == 10
    columns = [c.name for c in metadata["dagster/column_schema"].value.columns]
    assert columns == ["day", "id"]  # projected (the partition column always comes along)


def test_an_unpartitioned_table_reports_its_version_rows_and_last_commit(
    ray_session, tmp_path
) -> None:
    uri = str(tmp_path / "partner" / "rates")
    write_elsewhere(uri, ["2024-01-01"], rows=4)
    feed = external_delta_table("rates_feed", uri)
    resources = {"delta_io_manager": DeltaIOManager(root_uri=str(tmp_path / "ours"))}
    with dg.instance_for_test() as instance:
        before = observe(feed, resources, instance)
        write_elsewhere(uri, ["2024-01-02"], rows=3)
        after = observe(feed, resources, instance)
    ((first,), (second,)) = observations(before), observations(after)
    assert first.tags["dagster/data_version"] == "0"
    assert second.tags["dagster/data_version"] == "1"  # a new version: downstream can react
    assert second.metadata["dagster/row_count"].value == 7
    assert second.metadata["delta/table_version"].value == 1
    assert "last_commit_time" in second.metadata


def test_observing_a_missing_table_fails_naming_it(ray_session, tmp_path) -> None:
    feed = external_delta_table("missing_feed", str(tmp_path / "nothing"))
    resources = {"delta_io_manager": DeltaIOManager(root_uri=str(tmp_path))}
    with dg.instance_for_test() as instance, pytest.raises(RayAssetsError) as raised:
        observe(feed, resources, instance)
    assert f"table {tmp_path / 'nothing'}: no Delta table exists there" in str(raised.value)


def test_a_uri_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="without credentials") as raised:
        external_delta_table("feed", "s3://key:hunter2@bucket/orders")
    assert "hunter2" not in str(raised.value)
