"""The write path's sharp edges: untyped columns, Arrow errors, empty ranges, self-dependency,
escaped partition directories, None and empty outputs."""

from __future__ import annotations

import logging

import dagster as dg
import pyarrow as pa
import pytest

from ray_assets import (
    DeltaStore,
    PartitionSlice,
    PipelineFailedError,
    SchemaMismatchError,
    UnstorableValueError,
    partition_range_tags,
    ray_asset,
)
from tests.conftest import delta_log_rows, delta_version
from tests.test_assets import failure_text, resources

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")


def day_slice(*days: str, asset_key: str = "t") -> PartitionSlice:
    return PartitionSlice.from_keys(DAILY, list(days), "order_date", asset_key=asset_key)


def dataset(**columns):
    import ray.data

    return ray.data.from_arrow(pa.table(columns))


# ---------------------------------------------------------------- untyped (all-null) columns
def test_all_null_column_is_refused_on_the_first_write(ray_session, tmp_path) -> None:
    store = DeltaStore(str(tmp_path / "t"))
    data = dataset(order_date=["2024-01-01"] * 2, discount=pa.nulls(2))
    with pytest.raises(SchemaMismatchError) as raised:
        store.write(data, day_slice("2024-01-01"))
    message = str(raised.value)
    assert "asset 't', partition '2024-01-01'" in message
    assert "column(s) ['discount'] have no type" in message
    assert "dagster/column_schema" in message
    assert store.version() is None


def test_all_null_column_takes_the_tables_type(ray_session, tmp_path) -> None:
    store = DeltaStore(str(tmp_path / "t"))
    store.write(dataset(order_date=["2024-01-01"], discount=[0.5]), day_slice("2024-01-01"))
    result = store.write(
        dataset(order_date=["2024-01-02"] * 3, discount=pa.nulls(3)), day_slice("2024-01-02")
    )
    assert result.schema.field("discount").type == pa.float64()
    back = store.read(day_slice("2024-01-02")).take_all()
    assert [row["discount"] for row in back] == [None, None, None]


def test_declared_column_schema_types_an_all_null_column(ray_session, tmp_path) -> None:
    @ray_asset(
        partitions_def=DAILY,
        partition_column="order_date",
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn("discount", "double"), dg.TableColumn("note", "varchar")]
            )
        },
    )
    def priced(context: dg.AssetExecutionContext):
        day = context.partition_key
        if day == "2024-01-01":
            return dataset(order_date=[day] * 2, discount=pa.nulls(2), note=pa.nulls(2))
        return dataset(order_date=[day], discount=[0.25], note=["late"])

    with dg.instance_for_test() as instance:
        for day in ("2024-01-01", "2024-01-02"):
            result = dg.materialize(
                [priced], resources=resources(tmp_path), instance=instance, partition_key=day
            )
            assert result.success
    schema = pa.schema(DeltaStore(str(tmp_path / "priced")).open_table().schema().to_arrow())
    assert schema.field("discount").type == pa.float64()
    assert schema.field("note").type == pa.string()
    assert delta_log_rows(tmp_path / "priced") == {"2024-01-01": 2, "2024-01-02": 1}


# ---------------------------------------------------------------- Arrow errors in the headline
def test_timestamp_precision_loss_names_the_column_and_the_cause(ray_session, tmp_path) -> None:
    data = dataset(
        order_date=["2024-01-01"], ts=pa.array([1_700_000_000_000_000_001], pa.timestamp("ns"))
    )
    with pytest.raises(UnstorableValueError) as raised:
        DeltaStore(str(tmp_path / "t")).write(data, day_slice("2024-01-01"))
    headline = str(raised.value).splitlines()[0]
    assert headline.startswith("asset 't', partition '2024-01-01'")
    assert "column 'ts'" in headline and "timestamp[us]" in headline
    assert "ArrowInvalid: Casting from timestamp[ns] to timestamp[us] would lose data" in headline
    assert "ray::Write()" not in headline


def test_integer_overflow_names_the_column(ray_session, tmp_path) -> None:
    data = dataset(order_date=["2024-01-01"], big=pa.array([2**63 + 5], pa.uint64()))
    with pytest.raises(UnstorableValueError, match=r"column 'big': values of type uint64"):
        DeltaStore(str(tmp_path / "t")).write(data, day_slice("2024-01-01"))


def test_arrow_error_raised_in_user_code_is_the_headlines_cause(ray_session, tmp_path) -> None:
    def too_large(batch):
        raise pa.ArrowInvalid("input array too large")

    data = dataset(order_date=["2024-01-01"], v=[1]).map_batches(too_large, batch_format="pyarrow")
    with pytest.raises(PipelineFailedError) as raised:
        DeltaStore(str(tmp_path / "t")).write(data, day_slice("2024-01-01"))
    headline = str(raised.value).splitlines()[0]
    assert "Cause: pyarrow.lib.ArrowInvalid: input array too large (in too_large" in headline


def test_schema_diff_is_not_followed_by_rays_retry_advice(ray_session, tmp_path) -> None:
    store = DeltaStore(str(tmp_path / "t"))
    store.write(dataset(order_date=["2024-01-01"], x=[1]), day_slice("2024-01-01"))
    with pytest.raises(SchemaMismatchError) as raised:
        store.write(dataset(order_date=["2024-01-01"], x=["a"]), day_slice("2024-01-01"))
    message = str(raised.value)
    assert "~ x: table has int64, data has string" in message
    assert "transient" not in message and "Failed to apply UDF" not in message
    assert message.endswith("Nothing was committed.")


# ---------------------------------------------------------------- empty and reversed ranges
@ray_asset(partitions_def=DAILY, partition_column="order_date")
def daily_counts(context: dg.AssetExecutionContext):
    return dataset(
        order_date=list(context.partition_keys), n=list(range(len(context.partition_keys)))
    )


@pytest.mark.parametrize("table_exists", [True, False])
def test_reversed_range_is_refused_before_any_io(ray_session, tmp_path, table_exists) -> None:
    with dg.instance_for_test() as instance:
        if table_exists:
            dg.materialize(
                [daily_counts],
                resources=resources(tmp_path),
                instance=instance,
                tags=partition_range_tags("2024-01-01", "2024-01-05"),
            )
        result = dg.materialize(
            [daily_counts],
            resources=resources(tmp_path),
            instance=instance,
            tags=partition_range_tags("2024-01-05", "2024-01-04"),
            raise_on_error=False,
        )
    assert not result.success
    message = failure_text(result)
    assert "Asset 'daily_counts'" in message
    assert "the range '2024-01-05'...'2024-01-04' holds no partition key" in message
    assert "no blocks" not in message
    if table_exists:
        assert delta_version(tmp_path / "daily_counts") == 0
    else:
        assert not (tmp_path / "daily_counts").exists()


def test_slice_of_no_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="Asset 't': the run selects no partition key"):
        PartitionSlice.from_keys(DAILY, [], "order_date", asset_key="t")


# ---------------------------------------------------------------- self-dependent assets
@ray_asset(
    partitions_def=DAILY,
    partition_column="order_date",
    ins={
        "running_total": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
        )
    },
)
def running_total(context: dg.AssetExecutionContext, running_total: pa.Table):
    previous = sum(running_total.column("total").to_pylist()) if running_total.num_rows else 0
    return dataset(
        order_date=[context.partition_key],
        total=[previous + 10],
        rows_before=[running_total.num_rows],
    )


def test_self_dependent_asset_starts_from_an_empty_input(ray_session, tmp_path) -> None:
    with dg.instance_for_test() as instance:
        for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
            result = dg.materialize(
                [running_total], resources=resources(tmp_path), instance=instance, partition_key=day
            )
            assert result.success, failure_text(result)
    rows = DeltaStore(str(tmp_path / "running_total")).read(
        day_slice("2024-01-01", "2024-01-02", "2024-01-03", asset_key="running_total")
    )
    by_day = {r["order_date"]: (r["total"], r["rows_before"]) for r in rows.take_all()}
    assert by_day == {"2024-01-01": (10, 0), "2024-01-02": (20, 1), "2024-01-03": (30, 1)}


def test_empty_input_keeps_the_tables_columns(ray_session, tmp_path) -> None:
    """Rewriting the first partition later: the empty input has the table's schema."""
    seen: list[list[str]] = []

    @ray_asset(
        partitions_def=DAILY,
        partition_column="order_date",
        ins={
            "cumulative": dg.AssetIn(
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
            )
        },
    )
    def cumulative(context: dg.AssetExecutionContext, cumulative):
        seen.append(cumulative.columns() or [])
        assert cumulative.count() == 0
        return dataset(order_date=[context.partition_key], v=[1])

    with dg.instance_for_test() as instance:
        for _ in range(2):
            dg.materialize(
                [cumulative],
                resources=resources(tmp_path),
                instance=instance,
                partition_key="2024-01-01",
            )
    assert seen == [[], ["order_date", "v"]]


# ---------------------------------------------------------------- partition directories
def test_partition_column_names_are_escaped_in_directories(ray_session, tmp_path) -> None:
    static = dg.StaticPartitionsDefinition(["a b", "c/d"])
    sliced = PartitionSlice.from_keys(static, ["a b", "c/d"], "Order Date/x=y", asset_key="t")
    store = DeltaStore(str(tmp_path / "t"))
    store.write(dataset(**{"Order Date/x=y": ["a b", "c/d"], "v": [1, 2]}), sliced)
    # `_delta_log` and ray_assets' `_ray_assets` (its write records) are hidden from readers
    directories = sorted(p.name for p in (tmp_path / "t").iterdir() if not p.name.startswith("_"))
    assert directories == ["Order Date%2Fx%3Dy=a%20b", "Order Date%2Fx%3Dy=c%2Fd"]
    assert sorted(r["v"] for r in store.read(sliced).take_all()) == [1, 2]
    one = PartitionSlice.from_keys(static, ["c/d"], "Order Date/x=y", asset_key="t")
    assert store.read(one).take_all() == [{"Order Date/x=y": "c/d", "v": 2}]


def test_a_column_name_with_a_space_reads_back_in_polars(ray_session, tmp_path) -> None:
    import polars as pl

    static = dg.StaticPartitionsDefinition(["eu west", "us"])
    sliced = PartitionSlice.from_keys(static, ["eu west", "us"], "Sales Region", asset_key="t")
    DeltaStore(str(tmp_path / "t")).write(
        dataset(**{"Sales Region": ["eu west", "us"], "v": [1, 2]}), sliced
    )
    frame = pl.read_delta(str(tmp_path / "t"))
    assert sorted(frame.select(["Sales Region", "v"]).rows()) == [("eu west", 1), ("us", 2)]


# ---------------------------------------------------------------- None and empty outputs
def test_plain_asset_returning_none_fails_instead_of_recording_no_table(
    ray_session, tmp_path
) -> None:
    @dg.asset(io_manager_key="delta_io_manager")
    def forgot_to_return():
        return None

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [forgot_to_return],
            resources=resources(tmp_path),
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        assert "Asset 'forgot_to_return' returned None" in failure_text(result)
        assert instance.get_latest_materialization_event(dg.AssetKey("forgot_to_return")) is None
    assert not (tmp_path / "forgot_to_return").exists()


def test_empty_output_that_empties_partitions_is_reported(ray_session, tmp_path) -> None:
    @ray_asset(partitions_def=DAILY, partition_column="order_date")
    def sometimes_empty(context: dg.AssetExecutionContext):
        keys = [
            k for k in context.partition_keys if k != "2024-01-02" or context.run.tags.get("full")
        ]
        return dataset(order_date=keys * 3, v=list(range(3 * len(keys))))

    with dg.instance_for_test() as instance:
        dg.materialize(
            [sometimes_empty],
            resources=resources(tmp_path),
            instance=instance,
            tags={**partition_range_tags("2024-01-01", "2024-01-03"), "full": "1"},
        )
        result = dg.materialize(
            [sometimes_empty],
            resources=resources(tmp_path),
            instance=instance,
            tags=partition_range_tags("2024-01-01", "2024-01-03"),
        )
        logged = [
            entry.user_message
            for entry in instance.all_logs(result.run_id)
            if entry.level == logging.WARNING
        ]
    assert result.success
    assert any("sometimes_empty: the output had no rows for '2024-01-02'" in m for m in logged)
    events = {
        e.partition: e.metadata for e in result.asset_materializations_for_node("sometimes_empty")
    }
    assert events["2024-01-02"]["dagster/partition_row_count"].value == 0
    warning = events["2024-01-02"]["warnings"].value
    assert "the output had no rows for '2024-01-02' (3 rows before)" in warning
    assert delta_log_rows(tmp_path / "sometimes_empty") == {"2024-01-01": 3, "2024-01-03": 3}


def test_store_reports_the_partitions_an_empty_write_emptied(ray_session, tmp_path) -> None:
    store = DeltaStore(str(tmp_path / "t"))
    store.write(
        dataset(order_date=["2024-01-01", "2024-01-02", "2024-01-02"], v=[1, 2, 3]),
        day_slice("2024-01-01", "2024-01-02"),
    )
    result = store.write(
        dataset(order_date=pa.array([], pa.string()), v=pa.array([], pa.int64())),
        day_slice("2024-01-02", "2024-01-03"),
    )
    assert result.emptied_partitions == {"2024-01-02": 2}
    assert result.warnings == [
        "the output had no rows for '2024-01-02' (2 rows before): this write left them empty"
    ]
    assert delta_log_rows(tmp_path / "t") == {"2024-01-01": 1}  # the neighbour is untouched
