"""ray_asset and DeltaIOManager under real Dagster runs: ranges, mappings, metadata, failures."""

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ray_assets import (
    DeltaIOManager,
    DeltaStore,
    PartitionColumnError,
    PartitionKeyError,
    PartitionSlice,
    RayResource,
    partition_range_tags,
    ray_asset,
)
from tests.conftest import delta_log_rows, delta_version, failure_text

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
ROWS_PER_DAY = 40


def resources(root) -> dict[str, object]:
    return {"ray": RayResource(), "delta_io_manager": DeltaIOManager(root_uri=str(root))}


def make_orders(keys: list[str], rows_per_key: int = ROWS_PER_DAY, column: str = "order_date"):
    import ray.data

    def generate(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = batch["id"]
        return {
            "order_id": ids,
            column: np.array(keys, dtype=object)[ids // rows_per_key],
            "amount": (ids % 10) * 2.5,
        }

    return ray.data.range(rows_per_key * len(keys), override_num_blocks=2).map_batches(generate)


@ray_asset(partitions_def=DAILY, partition_column="order_date")
def orders(context: dg.AssetExecutionContext):
    return make_orders(context.partition_keys)


@ray_asset(partitions_def=DAILY, partition_column="order_date")
def clean_orders(context: dg.AssetExecutionContext, orders):
    from ray.data.expressions import col

    return orders.filter(expr=col("amount") > 0).map_batches(
        lambda batch: batch.assign(amount_cents=(batch["amount"] * 100).astype("int64")),
        batch_format="pandas",
    )


def test_range_run_writes_its_partitions_in_one_version_with_metadata(
    ray_session, tmp_path
) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [orders, clean_orders],
            resources=resources(tmp_path),
            instance=instance,
            tags=partition_range_tags("2024-01-01", "2024-01-03"),
        )
        assert result.success
        assert len(instance.get_runs()) == 1
        latest = instance.get_latest_materialization_event(dg.AssetKey("clean_orders"))
        assert latest is not None and latest.asset_materialization is not None
        assert latest.asset_materialization.partition == "2024-01-03"
        assert "dagster/column_schema" in latest.asset_materialization.metadata
        assert instance.get_materialized_partitions(dg.AssetKey("orders")) == {
            "2024-01-01",
            "2024-01-02",
            "2024-01-03",
        }
    assert delta_version(tmp_path / "orders") == 0
    assert delta_log_rows(tmp_path / "orders") == {
        d: 40 for d in ("2024-01-01", "2024-01-02", "2024-01-03")
    }
    # amount == 0 for one id in ten
    assert delta_log_rows(tmp_path / "clean_orders") == {
        d: 36 for d in ("2024-01-01", "2024-01-02", "2024-01-03")
    }
    events = {
        m.partition: m.metadata for m in result.asset_materializations_for_node("clean_orders")
    }
    assert set(events) == {"2024-01-01", "2024-01-02", "2024-01-03"}
    # every partition's event says where its rows are and what they are
    for day, metadata in events.items():
        assert metadata["dagster/partition_row_count"].value == 36, day
        assert metadata["dagster/table_name"].value == "clean_orders"
        assert metadata["dagster/uri"].value == str(tmp_path / "clean_orders")
        assert metadata["delta/table_version"].value == 0
    # the run's summary rides on the range's last day only: the event the UI shows as latest
    summary_keys = {"dagster/row_count", "dagster/column_schema", "rows_written"}
    assert not summary_keys & (set(events["2024-01-01"]) | set(events["2024-01-02"]))
    metadata = events["2024-01-03"]
    assert metadata["dagster/row_count"].value == 108
    assert metadata["rows_written"].value == 108
    assert metadata["files_written"].value >= 3 and metadata["bytes_written"].value > 0
    assert metadata["rows_per_second"].value > 0 and metadata["write_duration_s"].value > 0
    columns = [c.name for c in metadata["dagster/column_schema"].value.columns]
    assert columns == ["order_id", "order_date", "amount", "amount_cents"]


def test_asset_definition_defaults(ray_session) -> None:
    spec = orders.specs_by_key[dg.AssetKey("orders")]
    assert spec.kinds == {"ray", "deltalake"}
    assert orders.backfill_policy == dg.BackfillPolicy.single_run()
    assert orders.get_io_manager_key_for_asset_key(dg.AssetKey("orders")) == "delta_io_manager"
    assert {"ray", "delta_io_manager"} <= orders.required_resource_keys
    assert spec.metadata["partition_expr"] == "order_date"

    @ray_asset
    def dimension():
        return None

    assert dimension.backfill_policy == dg.BackfillPolicy.single_run()  # ranges may include it
    assert set(clean_orders.keys_by_input_name) == {"orders"}


def test_steps_run_in_the_ray_pool_unless_the_asset_names_another(monkeypatch) -> None:
    def pools(asset: dg.AssetsDefinition) -> set[str]:
        return asset.get_op_def_for_asset_key(asset.key).pools

    def fresh(**kwargs):
        @ray_asset(**kwargs)
        def table():
            return None

        return table

    assert pools(orders) == {"ray"}
    assert pools(fresh(pool="gpu")) == {"gpu"}
    assert pools(fresh(pool=None)) == set()
    monkeypatch.setenv("RAY_ASSETS_POOL", "cluster-eu")
    assert pools(fresh()) == {"cluster-eu"}


def test_rematerializing_one_key_replaces_only_that_key(ray_session, tmp_path) -> None:
    with dg.instance_for_test() as instance:
        dg.materialize(
            [orders],
            resources=resources(tmp_path),
            instance=instance,
            tags=partition_range_tags("2024-01-01", "2024-01-03"),
        )
        result = dg.materialize(
            [orders], resources=resources(tmp_path), instance=instance, partition_key="2024-01-02"
        )
    assert result.success
    (event,) = result.asset_materializations_for_node("orders")
    assert event.partition == "2024-01-02"
    assert event.metadata["dagster/partition_row_count"].value == 40
    assert delta_version(tmp_path / "orders") == 1
    assert delta_log_rows(tmp_path / "orders") == {
        d: 40 for d in ("2024-01-01", "2024-01-02", "2024-01-03")
    }


def test_seven_day_lookback_reads_exactly_seven_partitions(ray_session, tmp_path) -> None:
    files_read: list[list[str]] = []

    @ray_asset(
        partitions_def=DAILY,
        partition_column="order_date",
        ins={
            "orders": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-6))
        },
    )
    def orders_last_7_days(context: dg.AssetExecutionContext, orders):
        import ray.data

        files_read.append(orders.input_files())
        return ray.data.from_items(
            [
                {
                    "order_date": context.partition_key,
                    "orders": orders.count(),
                    "days": len(orders.unique("order_date")),
                }
            ]
        )

    with dg.instance_for_test() as instance:
        dg.materialize(
            [orders],
            resources=resources(tmp_path),
            instance=instance,
            tags=partition_range_tags("2024-01-01", "2024-01-10"),
        )
        result = dg.materialize(
            [orders, orders_last_7_days],
            selection=[orders_last_7_days],
            resources=resources(tmp_path),
            instance=instance,
            partition_key="2024-01-10",
        )
    assert result.success
    days_read = {f.split("order_date=")[1].split("/")[0] for f in files_read[0]}
    assert days_read == {f"2024-01-{d:02d}" for d in range(4, 11)}
    assert len(files_read[0]) == len(
        DeltaStore(str(tmp_path / "orders")).data_files(
            PartitionSlice.from_key_range(
                DAILY,
                dg.PartitionKeyRange("2024-01-04", "2024-01-10"),
                "order_date",
                asset_key="orders",
            )
        )
    )
    rows = (
        DeltaStore(str(tmp_path / "orders_last_7_days"))
        .read(PartitionSlice.unpartitioned("x"))
        .take_all()
    )
    assert rows == [{"order_date": "2024-01-10", "orders": 7 * 40, "days": 7}]


def test_unpartitioned_downstream_loads_every_partition(ray_session, tmp_path) -> None:
    @ray_asset
    def order_totals(context: dg.AssetExecutionContext, orders):
        import ray.data

        return ray.data.from_items([{"orders": orders.count(), "amount": orders.sum("amount")}])

    with dg.instance_for_test() as instance:
        dg.materialize(
            [orders],
            resources=resources(tmp_path),
            instance=instance,
            tags=partition_range_tags("2024-01-01", "2024-01-04"),
        )
        result = dg.materialize(
            [orders, order_totals],
            selection=[order_totals],
            resources=resources(tmp_path),
            instance=instance,
        )
    assert result.success
    (row,) = (
        DeltaStore(str(tmp_path / "order_totals"))
        .read(PartitionSlice.unpartitioned("x"))
        .take_all()
    )
    assert row == {"orders": 160, "amount": 4 * 4 * (2.5 * 45)}


def test_hourly_partitions_across_dst_change(ray_session, tmp_path) -> None:
    hourly = dg.HourlyPartitionsDefinition(
        start_date="2024-11-02-22:00", timezone="America/New_York"
    )

    @ray_asset(partitions_def=hourly, partition_column="hour")
    def clicks(context: dg.AssetExecutionContext):
        return make_orders(context.partition_keys, rows_per_key=5, column="hour")

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [clicks],
            resources=resources(tmp_path),
            instance=instance,
            tags=partition_range_tags("2024-11-03-00:00", "2024-11-03-03:00"),
        )
        assert result.success
        again = dg.materialize(
            [clicks],
            resources=resources(tmp_path),
            instance=instance,
            partition_key="2024-11-03-01:00-0500",
        )
        assert again.success
    expected = [
        "2024-11-03-00:00",
        "2024-11-03-01:00",
        "2024-11-03-01:00-0500",
        "2024-11-03-02:00",
        "2024-11-03-03:00",
    ]
    assert delta_log_rows(tmp_path / "clicks") == {key: 5 for key in expected}
    assert sorted(m.partition for m in result.asset_materializations_for_node("clicks")) == sorted(
        expected
    )
    assert delta_version(tmp_path / "clicks") == 1


def test_multi_partitions_use_one_column_per_dimension(ray_session, tmp_path) -> None:
    multi = dg.MultiPartitionsDefinition(
        {"date": DAILY, "region": dg.StaticPartitionsDefinition(["east", "north", "west"])}
    )

    @ray_asset(partitions_def=multi, partition_column={"date": "order_date", "region": "region"})
    def regional_orders(context: dg.AssetExecutionContext):
        import ray.data

        rows = []
        for key in context.partition_keys:
            parts = (
                key.keys_by_dimension
                if hasattr(key, "keys_by_dimension")
                else dict(zip(["date", "region"], key.split("|"), strict=True))
            )
            rows += [
                {"order_date": parts["date"], "region": parts["region"], "n": i} for i in range(3)
            ]
        return ray.data.from_items(rows)

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [regional_orders],
            resources=resources(tmp_path),
            instance=instance,
            tags=partition_range_tags("2024-01-01|east", "2024-01-02|north"),
        )
        assert result.success
        single = dg.materialize(
            [regional_orders],
            resources=resources(tmp_path),
            instance=instance,
            partition_key=dg.MultiPartitionKey({"date": "2024-01-02", "region": "west"}),
        )
        assert single.success
    assert delta_log_rows(tmp_path / "regional_orders") == {
        "2024-01-01|east": 3,
        "2024-01-01|north": 3,
        "2024-01-02|east": 3,
        "2024-01-02|north": 3,
        "2024-01-02|west": 3,
    }
    events = {
        m.partition: m.metadata for m in result.asset_materializations_for_node("regional_orders")
    }
    assert events["2024-01-02|north"]["dagster/partition_row_count"].value == 3


def test_exception_in_pipeline_fails_the_run_and_keeps_the_table(ray_session, tmp_path) -> None:
    @ray_asset(partitions_def=DAILY, partition_column="order_date", name="orders")
    def broken_orders(context: dg.AssetExecutionContext):
        def fail_on_one_block(batch):
            if (batch["order_id"] == 45).any():
                raise RuntimeError("upstream sent a malformed order 45")
            return batch

        return make_orders(context.partition_keys).map_batches(fail_on_one_block)

    with dg.instance_for_test() as instance:
        dg.materialize(
            [orders],
            resources=resources(tmp_path),
            instance=instance,
            tags=partition_range_tags("2024-01-01", "2024-01-02"),
        )
        result = dg.materialize(
            [broken_orders],
            resources=resources(tmp_path),
            instance=instance,
            tags=partition_range_tags("2024-01-01", "2024-01-02"),
            raise_on_error=False,
        )
        assert not result.success
        message = failure_text(result)
        assert "asset 'orders', partitions '2024-01-01'..'2024-01-02'" in message
        assert "RuntimeError: upstream sent a malformed order 45" in message
        assert len(instance.fetch_materializations(dg.AssetKey("orders"), limit=10).records) == 2
    assert delta_version(tmp_path / "orders") == 0


def test_stray_rows_fail_the_run_before_commit(ray_session, tmp_path) -> None:
    @ray_asset(partitions_def=DAILY, partition_column="order_date", name="orders")
    def leaky_orders(context: dg.AssetExecutionContext):
        return make_orders([*context.partition_keys, "2024-01-09"])

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [leaky_orders],
            resources=resources(tmp_path),
            instance=instance,
            tags=partition_range_tags("2024-01-01", "2024-01-03"),
            raise_on_error=False,
        )
    assert not result.success
    message = failure_text(result)
    assert "2024-01-09: 40 row(s)" in message
    assert not (tmp_path / "orders" / "_delta_log").exists()


def test_plain_assets_store_tables_and_frames_and_load_by_annotation(ray_session, tmp_path) -> None:
    regions = dg.StaticPartitionsDefinition(["east", "west"])
    loaded: dict[str, object] = {}

    @dg.asset(
        partitions_def=regions,
        io_manager_key="delta_io_manager",
        metadata={"partition_expr": "region"},
    )
    def sales(context: dg.AssetExecutionContext) -> pa.Table:
        return pa.table(
            {
                "region": [context.partition_key] * 3,
                "amount": [1.0, 2.0, 3.0],
                "note": ["a", "b", "c"],
            }
        )

    @dg.asset(io_manager_key="delta_io_manager")
    def targets() -> pd.DataFrame:
        return pd.DataFrame({"region": ["east", "west"], "target": [5.0, 7.0]})

    @dg.asset(
        partitions_def=regions,
        ins={"sales": dg.AssetIn(metadata={"columns": ["amount"]})},
    )
    def report(sales: pd.DataFrame, targets: pa.Table) -> None:
        loaded["sales"] = sales
        loaded["targets"] = targets

    with dg.instance_for_test() as instance:
        first = dg.materialize(
            [sales, targets], resources=resources(tmp_path), instance=instance, partition_key="east"
        )
        assert first.success
        (event,) = first.asset_materializations_for_node("sales")
        assert event.metadata["dagster/partition_row_count"].value == 3
        result = dg.materialize(
            [sales, targets, report],
            selection=[report],
            resources=resources(tmp_path),
            instance=instance,
            partition_key="east",
        )
    assert result.success
    assert isinstance(loaded["sales"], pd.DataFrame)
    assert list(loaded["sales"].columns) == ["region", "amount"]
    assert loaded["sales"]["amount"].tolist() == [1.0, 2.0, 3.0]
    assert isinstance(loaded["targets"], pa.Table) and loaded["targets"].num_rows == 2


class Multiplier(dg.ConfigurableResource):
    factor: int


def test_user_resources_and_config_reach_the_body(ray_session, tmp_path) -> None:
    @ray_asset
    def scaled(context: dg.AssetExecutionContext, multiplier: Multiplier):
        import ray.data

        factor = multiplier.factor  # plain values travel to Ray tasks; resources stay on the driver
        return ray.data.range(3).map(lambda row: {"v": row["id"] * factor})

    res = {**resources(tmp_path), "multiplier": Multiplier(factor=10)}
    assert dg.materialize([scaled], resources=res).success
    values = sorted(
        r["v"]
        for r in DeltaStore(str(tmp_path / "scaled"))
        .read(PartitionSlice.unpartitioned("x"))
        .take_all()
    )
    assert values == [0, 10, 20]


def test_asset_key_prefix_maps_to_nested_table_path(ray_session, tmp_path) -> None:
    @ray_asset(key_prefix=["sales", "eu"])
    def invoices(context: dg.AssetExecutionContext):
        import ray.data

        return ray.data.from_items([{"id": 1}])

    assert dg.materialize([invoices], resources=resources(tmp_path)).success
    assert delta_log_rows(tmp_path / "sales" / "eu" / "invoices") == {"": 1}


def test_partitioned_ray_asset_requires_a_partition_column() -> None:
    with pytest.raises(PartitionColumnError, match="names no partition column"):

        @ray_asset(partitions_def=DAILY)
        def no_column(context):
            return None

    with pytest.raises(PartitionColumnError, match="has no partitions_def"):

        @ray_asset(partition_column="d")
        def no_partitions(context):
            return None


def test_unknown_partition_key_is_rejected_before_any_io(ray_session, tmp_path) -> None:
    manager = DeltaIOManager(root_uri=str(tmp_path))
    with pytest.raises(PartitionKeyError, match=r"Asset 'orders'.*'2023-12-31'"):
        manager.write_asset(
            make_orders(["2023-12-31"]),
            asset_key=dg.AssetKey("orders"),
            partitions_def=DAILY,
            partition_keys=["2023-12-31"],
            partition_column="order_date",
            write_id="run",
        )
    assert not (tmp_path / "orders").exists()


def test_rerunning_a_committed_run_adds_no_rows_and_no_version(ray_session, tmp_path) -> None:
    import uuid

    job = dg.Definitions(
        assets=[orders], resources=resources(tmp_path)
    ).resolve_implicit_global_asset_job_def()
    run_id = str(uuid.uuid4())
    for attempt in range(2):  # e.g. the same run re-executed after its process died post-commit
        with dg.instance_for_test() as instance:
            result = job.execute_in_process(
                instance=instance,
                run_id=run_id,
                tags=partition_range_tags("2024-01-01", "2024-01-02"),
            )
        assert result.success
        event = result.asset_materializations_for_node("orders")[0]
        assert event.metadata["delta/committed"].value is (attempt == 0)
        assert event.metadata["delta/table_version"].value == 0
    assert delta_version(tmp_path / "orders") == 0
    assert delta_log_rows(tmp_path / "orders") == {"2024-01-01": 40, "2024-01-02": 40}
