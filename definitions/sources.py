"""The reference pipeline's source system, as a resource: how much data it produces and its seed.

A resource rather than asset config so that each environment (`resources/local.py`,
`resources/cluster.py`, the benchmarks) sizes the source once for every asset that reads it.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field, field_validator

from definitions.generator import MAX_ROWS_PER_DAY


class OrderSource(dg.ConfigurableResource):
    """A deterministic order-management system: `rows_per_day` orders a day, `customers` customers."""

    rows_per_day: int = Field(default=20_000, description="Raw orders generated per day.")
    customers: int = Field(default=2_000, description="Customers in the customer dimension.")
    seed: int = Field(default=7, description="Same seed, same data: every run is reproducible.")
    bad_rows_day: str = Field(
        default="",
        description="A day (YYYY-MM-DD) whose export carries broken rows (repeated order ids, "
        "absurd quantities), so the quality checks' failure path can be seen; empty: none.",
    )
    rows_per_block: int = Field(
        default=250_000,
        description="Rows per Ray block the generator emits; bounds the memory of one task.",
    )

    @field_validator("rows_per_day")
    @classmethod
    def _rows_per_day_in_range(cls, value: int) -> int:
        if not 1 <= value < MAX_ROWS_PER_DAY:
            raise ValueError(f"rows_per_day must be in [1, {MAX_ROWS_PER_DAY}), got {value}")
        return value

    @field_validator("customers", "rows_per_block")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value
