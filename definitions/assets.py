"""The reference ETL: raw orders -> clean orders -> orders with customers -> revenue per region.

Every asset returns a lazy Ray Data pipeline; ray_assets streams it into its Delta table and
hands it, pruned to the run's days, to the next asset. A backfill of N days is one run and one
commit per asset. The transforms are module-level functions (never closures over resources),
so Ray can ship them to workers anywhere in a cluster.
"""

from __future__ import annotations

import functools
import math

import dagster as dg
import ray
import ray.data
from ray.data.expressions import col

from definitions import quality
from definitions.crm import CRM_CUSTOMERS, Crm
from definitions.generator import CUSTOMERS_SCHEMA, make_orders
from definitions.sources import OrderSource
from definitions.transforms import as_customer_types, price_orders, round_money
from ray_assets import ROWS, aggregate_by, broadcast_join, ray_asset

daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")
daily_asset = functools.partial(
    ray_asset, partitions_def=daily, partition_column="order_date", group_name="sales"
)
"""A daily `ray_asset` whose table is partitioned by `order_date`."""

CUSTOMER_COLUMNS = ["customer_id", "region", "segment"]
FOLLOWS_UPSTREAM = dg.AutomationCondition.eager()
"""Downstream days follow their upstream: when the latest day of an upstream asset is
materialized (a manual launch, the landing of a late export), the daemon's automation sensor
requests the same day downstream, in one run."""


@ray_asset(
    description="Customer dimension, read from the CRM database: region and segment per customer.",
    group_name="sales",
)
def customers(crm: Crm, order_source: OrderSource) -> ray.data.Dataset:
    crm.ensure_seeded(order_source)
    return crm.database.read(
        CRM_CUSTOMERS, columns=CUSTOMERS_SCHEMA.names, shard_column="customer_id"
    ).map_batches(as_customer_types, batch_format="pyarrow")


@daily_asset(
    description="Orders as the order system exports them, one partition per day.",
)
def raw_orders(context: dg.AssetExecutionContext, order_source: OrderSource) -> ray.data.Dataset:
    days = list(context.partition_keys)
    rows = len(days) * order_source.rows_per_day
    blocks = max(1, math.ceil(rows / order_source.rows_per_block))
    context.log.info(f"generating {rows:,} orders for {len(days)} day(s) in {blocks} blocks")
    return ray.data.range(rows, override_num_blocks=blocks).map_batches(
        make_orders,
        batch_format="numpy",
        fn_kwargs={
            "days": days,
            "rows_per_day": order_source.rows_per_day,
            "customers": order_source.customers,
            "seed": order_source.seed,
            "bad_rows_day": order_source.bad_rows_day,
        },
    )


@daily_asset(
    description="Valid orders only (a price, a quantity, not cancelled), with a signed amount.",
    automation_condition=FOLLOWS_UPSTREAM,
    checks=quality.CLEAN_ORDERS,
    columns={
        "order_id": "The order system's identifier; unique.",
        "order_date": "The UTC day of the order (the partition).",
        "ordered_at": "When the order was placed (UTC).",
        "customer_id": "The ordering customer.",
        "quantity": "Units ordered (at least 1).",
        "unit_price": "Price of one unit, after discount.",
        "amount": "quantity × unit_price, rounded to cents; negative for a return.",
        "is_return": "Whether the order was returned.",
    },
    column_lineage={"amount": ["raw_orders.quantity", "raw_orders.unit_price"]},
)
def clean_orders(raw_orders: ray.data.Dataset) -> ray.data.Dataset:
    valid = (col("quantity") > 0) & (col("status") != "cancelled") & col("unit_price").is_not_null()
    return raw_orders.filter(expr=valid).map_batches(price_orders, batch_format="pyarrow")


@daily_asset(
    description="Clean orders joined with their customer's region and segment; orders of unknown "
    "customers drop out (inner join). The customer dimension is small, so it is broadcast to "
    "the tasks that stream the orders instead of shuffling both sides.",
    automation_condition=FOLLOWS_UPSTREAM,
    checks=quality.ORDERS_ENRICHED,
)
def orders_enriched(
    clean_orders: ray.data.Dataset, customers: ray.data.Dataset
) -> ray.data.Dataset:
    return broadcast_join(
        clean_orders, customers.select_columns(CUSTOMER_COLUMNS), on="customer_id"
    )


@daily_asset(
    description="Revenue, order count and average order value per day and region.",
    automation_condition=FOLLOWS_UPSTREAM,
    checks=quality.DAILY_REGION_REVENUE,
    columns={
        "revenue": "Sum of the day's amounts in the region (returns subtract).",
        "orders": "Orders of the day in the region.",
        "avg_order_value": "revenue / orders.",
    },
    column_lineage={
        "revenue": ["orders_enriched.amount"],
        "orders": ["orders_enriched.order_id"],
        "avg_order_value": ["orders_enriched.amount"],
    },
)
def daily_region_revenue(orders_enriched: ray.data.Dataset) -> ray.data.Dataset:
    totals = aggregate_by(  # a few groups a day: combined per task, no shuffle
        orders_enriched.select_columns(["order_date", "region", "amount"]),
        ["order_date", "region"],
        {
            "revenue": ("amount", "sum"),
            "orders": (ROWS, "count"),
            "avg_order_value": ("amount", "mean"),
        },
    )
    return totals.map_batches(round_money, batch_format="pyarrow")


@daily_asset(
    description="daily_region_revenue in the CRM database (table daily_region_revenue_export), "
    "replaced day by day in one transaction per run.",
    io_manager_key="sql_io_manager",
    automation_condition=FOLLOWS_UPSTREAM,
    group_name="exports",
)
def daily_region_revenue_export(daily_region_revenue: ray.data.Dataset) -> ray.data.Dataset:
    return daily_region_revenue


ASSETS = [
    customers,
    raw_orders,
    clean_orders,
    orders_enriched,
    daily_region_revenue,
    daily_region_revenue_export,
]
DAILY_ASSETS = [
    raw_orders,
    clean_orders,
    orders_enriched,
    daily_region_revenue,
    daily_region_revenue_export,
]
DELTA_ASSETS = ASSETS[:-1]
"""The assets stored as Delta tables (the export lives in the CRM database)."""
