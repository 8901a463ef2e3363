"""The reference pipeline's quality checks, decided by ray_assets before each commit.

A day that breaks a blocking check is not committed and its downstream days do not run; the
run's failure and the asset's Checks tab name the day, the count and up to five values. Set
`OrderSource(bad_rows_day="2024-01-02")` (or `RAY_ASSETS_BAD_ROWS_DAY`) to see it in the UI.
`RAY_ASSETS_REFERENCE_CHECKS=off` defines the assets without checks (bench/checks_cost.py
measures what the checks cost with it).
"""

from __future__ import annotations

import os

from ray.data.expressions import col

from definitions.generator import STATUSES
from ray_assets import checks


def enabled() -> bool:
    return os.environ.get("RAY_ASSETS_REFERENCE_CHECKS", "on").lower() not in ("off", "0", "no")


def _when_enabled(check_list: list[checks.Check]) -> list[checks.Check]:
    return check_list if enabled() else []


CLEAN_ORDERS = _when_enabled(
    [
        checks.not_null(["order_id", "customer_id", "unit_price", "amount"]),
        checks.unique("order_id"),
        checks.between("quantity", 1, 1_000),
        checks.accepted_values("status", [s for s in STATUSES if s != "cancelled"]),
        checks.expression(
            "returns_are_negative",
            (col("status") != "returned") | (col("amount") <= 0),
            description="a returned order counts against revenue (amount <= 0)",
        ),
    ]
)
ORDERS_ENRICHED = _when_enabled(
    [
        checks.not_null(["region", "segment"]),
        checks.unique("order_id"),
        checks.row_count(min=1),
    ]
)
DAILY_REGION_REVENUE = _when_enabled(
    [
        checks.unique(["order_date", "region"]),
        checks.between("orders", 1),
        checks.between("avg_order_value", -1_000, 1_000, blocking=False),
    ]
)
