"""Column descriptions, column lineage and the per-partition profile, as Dagster records them."""

import dagster as dg
import pyarrow as pa

from ray_assets import DeltaIOManager, RayResource, materialize_partition_range, ray_asset
from ray_assets.metadata import docstring_columns, summary_partition

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")


@ray_asset(partitions_def=DAILY, partition_column="day")
def sales(context: dg.AssetExecutionContext):
    """Sales as the till reports them.

    Columns:
        day: the business day.
        amount: signed amount in the till's currency;
            returns are negative.
        rate: conversion rate to USD.
    """
    import ray.data

    days = list(context.partition_keys)
    amounts = {"2024-01-01": [10.0, None, -4.0, 6.0], "2024-01-02": [1.0, 2.0, 3.0, 4.0]}
    return ray.data.from_arrow(
        pa.concat_tables(
            pa.table({"day": [d] * 4, "amount": amounts[d], "rate": [2.0] * 4}) for d in days
        )
    )


@ray_asset(
    partitions_def=DAILY,
    partition_column="day",
    columns={"amount_usd": "amount × rate, in USD"},
    column_lineage={"amount_usd": ["sales.amount", ("sales", "rate")]},
)
def sales_usd(sales):
    import pyarrow.compute as pc

    return sales.map_batches(
        lambda t: t.append_column("amount_usd", pc.multiply(t["amount"], t["rate"])),
        batch_format="pyarrow",
    )


def test_docstring_columns_section_is_parsed() -> None:
    assert docstring_columns(sales.op.compute_fn.decorated_fn.__doc__) == {
        "day": "the business day.",
        "amount": "signed amount in the till's currency; returns are negative.",
        "rate": "conversion rate to USD.",
    }
    declared = sales.specs_by_key[dg.AssetKey("sales")].metadata["dagster/column_schema"]
    assert [c.name for c in declared.columns] == ["day", "amount", "rate"]


def test_descriptions_lineage_and_profile_reach_dagster(ray_session, tmp_path) -> None:
    resources = {"ray": RayResource(), "delta_io_manager": DeltaIOManager(root_uri=str(tmp_path))}
    result = materialize_partition_range(
        [sales, sales_usd], "2024-01-01", "2024-01-02", resources=resources
    )
    by_partition = {
        event.partition: event.metadata for event in result.asset_materializations_for_node("sales")
    }
    first = by_partition["2024-01-01"]
    latest = by_partition["2024-01-02"]  # the range's last day carries the run's summary
    described = {
        c.name: (c.type, c.description) for c in latest["dagster/column_schema"].value.columns
    }
    assert described["amount"] == (
        "double",
        "signed amount in the till's currency; returns are negative.",
    )
    # the profile is each partition's own
    assert first["profile/amount/null_fraction"].value == 0.25
    assert first["profile/amount/min"].value == -4.0 and first["profile/amount/max"].value == 10.0
    second = by_partition["2024-01-02"]
    assert second["profile/amount/null_fraction"].value == 0.0
    assert second["profile/amount/min"].value == 1.0 and second["profile/amount/max"].value == 4.0

    usd = {
        event.partition: event.metadata
        for event in result.asset_materializations_for_node("sales_usd")
    }["2024-01-02"]
    lineage = usd["dagster/column_lineage"].value.deps_by_column
    assert {(d.asset_key, d.column_name) for d in lineage["amount_usd"]} == {
        (dg.AssetKey("sales"), "amount"),
        (dg.AssetKey("sales"), "rate"),
    }
    # columns carried through keep their upstream column
    assert [(d.asset_key, d.column_name) for d in lineage["rate"]] == [
        (dg.AssetKey("sales"), "rate")
    ]
    columns = {c.name: c.description for c in usd["dagster/column_schema"].value.columns}
    assert columns["amount_usd"] == "amount × rate, in USD"


def test_the_run_summary_rides_on_the_last_day_of_time_window_ranges_only() -> None:
    days = dg.DailyPartitionsDefinition(start_date="2024-01-01")
    keys = days.get_partition_keys()[:3]
    assert summary_partition(days, keys) == keys[-1]
    # one key, no partitions: the one event carries everything
    assert summary_partition(days, keys[:1]) is None
    assert summary_partition(None, None) is None
    # Dagster records these ranges' events in set order: every event carries the summary
    regions = dg.StaticPartitionsDefinition(["eu", "us", "apac"])
    assert summary_partition(regions, ["eu", "us", "apac"]) is None
