"""PartitionSlice: every kind of Dagster partitions definition becomes an exact, structured filter."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ray_assets import PartitionColumnError, PartitionKeyError, PartitionSlice

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
MULTI = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(start_date="2024-01-01"),
        "region": dg.StaticPartitionsDefinition(["east", "north", "west"]),
    }
)


def test_range_covers_exactly_its_keys() -> None:
    sliced = PartitionSlice.from_key_range(
        DAILY, dg.PartitionKeyRange("2024-01-01", "2024-01-03"), "order_date", asset_key="orders"
    )
    assert sliced.keys == ("2024-01-01", "2024-01-02", "2024-01-03")
    assert sliced.delta_partition_filters() == [
        ("order_date", "in", ["2024-01-01", "2024-01-02", "2024-01-03"])
    ]


def test_filters_are_tuples_of_values_never_sql_text() -> None:
    hostile = dg.StaticPartitionsDefinition(["x' OR '1'='1", "a/../b"])
    sliced = PartitionSlice.from_keys(hostile, ["x' OR '1'='1"], "k", asset_key="t")
    ((column, operator, values),) = sliced.delta_partition_filters()
    assert (column, operator, values) == ("k", "in", ["x' OR '1'='1"])


def test_unknown_key_is_rejected_naming_asset_and_key() -> None:
    with pytest.raises(PartitionKeyError, match=r"Asset 'orders'.*'2023-12-31'"):
        PartitionSlice.from_keys(DAILY, ["2023-12-31"], "order_date", asset_key="orders")
    with pytest.raises(PartitionKeyError, match="'2024-13-01'"):
        PartitionSlice.from_keys(DAILY, ["2024-13-01"], "order_date", asset_key="orders")
    static = dg.StaticPartitionsDefinition(["a", "b"])
    with pytest.raises(PartitionKeyError, match="'c'"):
        PartitionSlice.from_keys(static, ["a", "c"], "k", asset_key="t")


def test_future_time_partition_is_not_a_member() -> None:
    tomorrow = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    with pytest.raises(PartitionKeyError, match=tomorrow):
        PartitionSlice.from_keys(DAILY, [tomorrow], "d", asset_key="orders")


def test_hourly_keys_across_dst_fall_back_stay_distinct() -> None:
    hourly = dg.HourlyPartitionsDefinition(
        start_date="2024-11-03-00:00", end_date="2024-11-03-04:00", timezone="America/New_York"
    )
    sliced = PartitionSlice.from_key_range(
        hourly, dg.PartitionKeyRange("2024-11-03-00:00", "2024-11-03-03:00"), "hour", asset_key="h"
    )
    # 01:00 happens twice; Dagster names the second one with its offset.
    assert sliced.keys == (
        "2024-11-03-00:00",
        "2024-11-03-01:00",
        "2024-11-03-01:00-0500",
        "2024-11-03-02:00",
        "2024-11-03-03:00",
    )
    assert len(sliced.value_set) == 5


def test_hourly_range_across_dst_spring_forward_skips_missing_hour() -> None:
    hourly = dg.HourlyPartitionsDefinition(
        start_date="2024-03-10-00:00", timezone="America/New_York"
    )
    sliced = PartitionSlice.from_key_range(
        hourly, dg.PartitionKeyRange("2024-03-10-00:00", "2024-03-10-04:00"), "hour", asset_key="h"
    )
    assert sliced.keys == (
        "2024-03-10-00:00",
        "2024-03-10-01:00",
        "2024-03-10-03:00",
        "2024-03-10-04:00",
    )


@pytest.mark.parametrize(
    ("partitions_def", "start", "end", "count"),
    [
        (dg.WeeklyPartitionsDefinition(start_date="2024-01-01"), "2024-01-07", "2024-01-21", 3),
        (dg.MonthlyPartitionsDefinition(start_date="2024-01-01"), "2024-01-01", "2024-04-01", 4),
        (
            dg.TimeWindowPartitionsDefinition(
                start="2024-01-01-00:00", cron_schedule="0 */6 * * *", fmt="%Y-%m-%d-%H:%M"
            ),
            "2024-01-01-00:00",
            "2024-01-01-18:00",
            4,
        ),
    ],
)
def test_time_window_definitions_of_any_cadence(partitions_def, start, end, count) -> None:
    sliced = PartitionSlice.from_key_range(
        partitions_def, dg.PartitionKeyRange(start, end), "p", asset_key="t"
    )
    assert len(sliced.keys) == count
    assert sliced.keys[0] == start and sliced.keys[-1] == end


def test_time_window_selects_windows_inside_it() -> None:
    window = dg.TimeWindow(
        dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc),
        dt.datetime(2024, 1, 5, tzinfo=dt.timezone.utc),
    )
    sliced = PartitionSlice.from_time_window(DAILY, window, "d", asset_key="t")
    assert sliced.keys == ("2024-01-02", "2024-01-03", "2024-01-04")


def test_dynamic_partitions_are_checked_against_the_instance() -> None:
    dynamic = dg.DynamicPartitionsDefinition(name="customers")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("customers", ["acme", "globex"])
        sliced = PartitionSlice.from_keys(
            dynamic, ["acme"], "customer", asset_key="t", dynamic_partitions_store=instance
        )
        assert sliced.values == (("acme",),)
        with pytest.raises(PartitionKeyError, match="'initech'"):
            PartitionSlice.from_keys(
                dynamic, ["initech"], "customer", asset_key="t", dynamic_partitions_store=instance
            )


def test_multi_partitions_map_each_dimension_to_a_column() -> None:
    sliced = PartitionSlice.from_key_range(
        MULTI,
        dg.PartitionKeyRange("2024-01-02|east", "2024-01-03|north"),
        {"date": "order_date", "region": "region"},
        asset_key="sales",
    )
    assert sliced.columns == ("order_date", "region")
    assert sliced.value_set == {
        ("2024-01-02", "east"),
        ("2024-01-02", "north"),
        ("2024-01-03", "east"),
        ("2024-01-03", "north"),
    }
    assert sliced.delta_partition_filters() == [
        ("order_date", "in", ["2024-01-02", "2024-01-03"]),
        ("region", "in", ["east", "north"]),
    ]
    assert sliced.key_of(("2024-01-03", "east")) == "2024-01-03|east"


def test_non_rectangular_multi_subset_cannot_be_one_delta_overwrite() -> None:
    sliced = PartitionSlice.from_keys(
        MULTI, ["2024-01-02|east", "2024-01-03|west"], {"date": "d", "region": "r"}, asset_key="s"
    )
    assert not sliced.is_rectangular()
    with pytest.raises(PartitionColumnError, match="rectangle"):
        sliced.delta_partition_filters()
    # ...but it still filters rows exactly.
    table = pa.table(
        {"d": ["2024-01-02", "2024-01-02", "2024-01-03"], "r": ["east", "west", "west"]}
    )
    kept = table.filter(sliced.to_pyarrow_expression())
    assert kept.to_pylist() == [{"d": "2024-01-02", "r": "east"}, {"d": "2024-01-03", "r": "west"}]


def test_multi_partitions_need_a_column_per_dimension() -> None:
    with pytest.raises(PartitionColumnError, match="map each dimension"):
        PartitionSlice.from_keys(MULTI, ["2024-01-02|east"], "order_date", asset_key="s")
    with pytest.raises(PartitionColumnError, match=r"missing \['region'\]"):
        PartitionSlice.from_keys(MULTI, ["2024-01-02|east"], {"date": "d"}, asset_key="s")


def test_partitioned_asset_without_partition_column_is_refused() -> None:
    with pytest.raises(PartitionColumnError, match="names no partition column"):
        PartitionSlice.from_keys(DAILY, ["2024-01-01"], None, asset_key="orders")


def test_pyarrow_expression_on_string_and_date_columns() -> None:
    sliced = PartitionSlice.from_keys(DAILY, ["2024-01-02", "2024-01-03"], "d", asset_key="t")
    strings = pa.table({"d": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]})
    assert strings.filter(sliced.to_pyarrow_expression())["d"].to_pylist() == [
        "2024-01-02",
        "2024-01-03",
    ]
    dates = strings.cast(pa.schema([("d", pa.date32())]))
    kept = dates.filter(sliced.to_pyarrow_expression(dates.schema))
    assert kept["d"].to_pylist() == [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    assert pc.all(pc.is_valid(kept["d"])).as_py()


def test_ray_expression_matches_the_slice() -> None:
    sliced = PartitionSlice.from_keys(DAILY, ["2024-01-02"], "d", asset_key="t")
    expression = sliced.to_ray_expression()
    assert expression.structurally_equals(
        __import__("ray.data.expressions", fromlist=["col"]).col("d").is_in(["2024-01-02"])
    )


def test_unpartitioned_slice_is_the_whole_table() -> None:
    sliced = PartitionSlice.from_keys(None, None, None, asset_key="customers")
    assert not sliced.is_partitioned
    assert sliced.delta_partition_filters() is None
    assert sliced.to_pyarrow_expression() is None
    assert "unpartitioned" in sliced.describe()


def test_fingerprint_depends_on_values_not_order() -> None:
    a = PartitionSlice.from_keys(DAILY, ["2024-01-01", "2024-01-02"], "d", asset_key="t")
    b = PartitionSlice.from_keys(DAILY, ["2024-01-02", "2024-01-01"], "d", asset_key="t")
    c = PartitionSlice.from_keys(DAILY, ["2024-01-01"], "d", asset_key="t")
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_timestamp_columns_store_the_utc_window_start() -> None:
    hourly = dg.HourlyPartitionsDefinition(
        start_date="2024-11-03-00:00", timezone="America/New_York"
    )
    keys = ["2024-11-03-01:00", "2024-11-03-01:00-0500"]
    sliced = PartitionSlice.from_keys(hourly, keys, "hour", asset_key="clicks")
    kind = pa.timestamp("us", tz="UTC")
    assert sliced.stored_values({"hour": kind}) == (
        ("2024-11-03 05:00:00.000000",),
        ("2024-11-03 06:00:00.000000",),
    )
    assert sliced.delta_partition_filters({"hour": kind}) == [
        ("hour", "in", ["2024-11-03 05:00:00.000000", "2024-11-03 06:00:00.000000"])
    ]
    instants = [dt.datetime(2024, 11, 3, h, tzinfo=dt.timezone.utc) for h in (5, 6, 7)]
    table = pa.table({"hour": pa.array(instants, kind)})
    kept = table.filter(sliced.to_pyarrow_expression(table.schema))
    assert kept["hour"].to_pylist() == instants[:2]
    static = PartitionSlice.from_keys(
        dg.StaticPartitionsDefinition(["a"]), ["a"], "k", asset_key="t"
    )
    with pytest.raises(PartitionColumnError, match="not a time window"):
        static.stored_values({"k": kind})
