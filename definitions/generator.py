"""Deterministic, realistic raw data for the reference pipeline: orders per day and customers.

Every value is a pure function of (seed, day, order number) or (seed, customer id), computed
with a counter-based hash rather than a stateful random generator, so a row comes out the same
whatever Ray block it falls in, however many workers run, and whichever days a run covers.
That makes a backfill of any range reproducible, and lets tests recompute expected results in
the driver from the same functions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

REGIONS = ("north", "south", "east", "west", "central")
SEGMENTS = ("consumer", "small_business", "enterprise")
SEGMENT_WEIGHTS = (0.70, 0.22, 0.08)
CHANNELS = ("web", "app", "store", "phone")
CHANNEL_WEIGHTS = (0.45, 0.30, 0.20, 0.05)
BAD_ROW_EVERY = 50
"""On the bad-rows day, one order in this many is broken."""
STATUSES = ("placed", "shipped", "delivered", "returned", "cancelled")
STATUS_WEIGHTS = (0.10, 0.25, 0.55, 0.04, 0.06)
PRODUCTS = (
    ("espresso beans 1kg", 24.90),
    ("filter coffee 500g", 11.50),
    ("green tea 100 bags", 7.80),
    ("ceramic mug", 9.99),
    ("pour-over kettle", 54.00),
    ("burr grinder", 139.00),
    ("milk frother", 29.95),
    ("travel tumbler", 19.50),
    ("paper filters x100", 4.60),
    ("descaler", 8.25),
    ("cold brew jug", 32.00),
    ("espresso machine", 449.00),
)
UNKNOWN_CUSTOMER_SHARE = 0.004
"""Orders whose customer is missing from the dimension (late-arriving or deleted customers)."""
MISSING_PRICE_SHARE = 0.003
ZERO_QUANTITY_SHARE = 0.01
MAX_ROWS_PER_DAY = 10_000_000
"""Order ids are `<day ordinal> * 10**7 + <order number>`: unique across days below this."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

ORDERS_SCHEMA = pa.schema(
    [
        ("order_id", pa.int64()),
        ("order_date", pa.string()),
        ("ordered_at", pa.timestamp("us", tz="UTC")),
        ("customer_id", pa.int64()),
        ("product", pa.string()),
        ("quantity", pa.int32()),
        ("unit_price", pa.float64()),
        ("channel", pa.string()),
        ("status", pa.string()),
    ]
)
CUSTOMERS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("customer_name", pa.string()),
        ("region", pa.string()),
        ("segment", pa.string()),
        ("signup_date", pa.date32()),
    ]
)


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-distributed 64-bit hash of each uint64 value."""
    with np.errstate(over="ignore"):
        x = values.astype(np.uint64) + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _uniform(keys: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """A uniform [0, 1) draw per key, independent across `stream`s and seeds."""
    with np.errstate(over="ignore"):
        salted = mix64(keys.astype(np.uint64) ^ mix64(np.array([seed * 1_000 + stream], np.uint64)))
    return (salted >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _choice(draws: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    cumulative = np.cumsum(weights) / np.sum(weights)
    return np.minimum(np.searchsorted(cumulative, draws, side="right"), len(weights) - 1)


def _pick(choices: Sequence[str], index: np.ndarray) -> pa.Array:
    """`choices[index]` as an Arrow string array, taken in C rather than through Python objects."""
    return pa.array(choices, pa.string()).take(pa.array(index, pa.int64()))


def make_orders(
    batch: dict[str, np.ndarray],
    *,
    days: Sequence[str],
    rows_per_day: int,
    customers: int,
    seed: int,
    bad_rows_day: str = "",
) -> pa.Table:
    """Orders for the row indices in `batch["id"]` of a range over `days x rows_per_day`.

    A `map_batches` function over `ray.data.range(len(days) * rows_per_day)`: index `i` is order
    number `i % rows_per_day` of day `days[i // rows_per_day]`. On `bad_rows_day` the export is
    broken the way real ones break: every `BAD_ROW_EVERY`th order repeats the id of the order
    before it, and its quantity is absurd (the quality checks refuse that day).
    """
    index = np.asarray(batch["id"], dtype=np.int64)
    day_positions = index // rows_per_day
    numbers = index % rows_per_day
    ordinals = np.array([dt.date.fromisoformat(d).toordinal() for d in days], dtype=np.int64)
    ids = ordinals[day_positions] * MAX_ROWS_PER_DAY + numbers

    midnight_us = (ordinals[day_positions] - dt.date(1970, 1, 1).toordinal()) * 86_400_000_000
    # busier in the day than at night: a triangular distribution peaking at 14:00 UTC
    hour_draw = _uniform(ids, seed, 1)
    seconds = np.where(
        hour_draw < 14 / 24,
        np.sqrt(hour_draw * 14 / 24) * 86_400,
        86_400 - np.sqrt((1 - hour_draw) * 10 / 24) * 86_400,
    )
    ordered_at = midnight_us + (seconds * 1_000_000).astype(np.int64)

    customer_ids = 1 + (_uniform(ids, seed, 2) * customers).astype(np.int64)
    unknown = _uniform(ids, seed, 3) < UNKNOWN_CUSTOMER_SHARE
    customer_ids = np.where(unknown, customers + customer_ids, customer_ids)

    product_index = (_uniform(ids, seed, 4) * len(PRODUCTS)).astype(np.int64)
    base_prices = np.array([price for _, price in PRODUCTS])[product_index]
    discount = np.where(_uniform(ids, seed, 5) < 0.15, 0.9, 1.0)
    unit_price = np.round(base_prices * discount, 2)
    price_missing = _uniform(ids, seed, 6) < MISSING_PRICE_SHARE

    quantity = 1 + np.floor(-np.log1p(-_uniform(ids, seed, 7) * 0.97) * 1.5).astype(np.int32)
    quantity = np.where(_uniform(ids, seed, 8) < ZERO_QUANTITY_SHARE, 0, quantity)

    if bad_rows_day in days:
        broken = (day_positions == days.index(bad_rows_day)) & (numbers % BAD_ROW_EVERY == 1)
        ids = np.where(broken, ids - 1, ids)
        quantity = np.where(broken, 100_000, quantity).astype(np.int32)

    return pa.table(
        {
            "order_id": pa.array(ids, pa.int64()),
            "order_date": _pick(days, day_positions),
            "ordered_at": pa.array(ordered_at, pa.timestamp("us", tz="UTC")),
            "customer_id": pa.array(customer_ids, pa.int64()),
            "product": _pick([name for name, _ in PRODUCTS], product_index),
            "quantity": pa.array(quantity, pa.int32()),
            "unit_price": pa.array(unit_price, pa.float64(), mask=price_missing),
            "channel": _pick(CHANNELS, _choice(_uniform(ids, seed, 9), CHANNEL_WEIGHTS)),
            "status": _pick(STATUSES, _choice(_uniform(ids, seed, 10), STATUS_WEIGHTS)),
        },
        schema=ORDERS_SCHEMA,
    )


def make_customers(batch: dict[str, np.ndarray], *, seed: int) -> pa.Table:
    """Customers for the 0-based indices in `batch["id"]` (customer id = index + 1)."""
    ids = np.asarray(batch["id"], dtype=np.int64) + 1
    signup_days = (_uniform(ids, seed, 21) * 3 * 365).astype(np.int64)
    first_signup = dt.date(2021, 1, 1).toordinal() - dt.date(1970, 1, 1).toordinal()
    return pa.table(
        {
            "customer_id": pa.array(ids, pa.int64()),
            "customer_name": pa.array([f"Customer {i:06d}" for i in ids], pa.string()),
            "region": _pick(REGIONS, (_uniform(ids, seed, 22) * len(REGIONS)).astype(np.int64)),
            "segment": _pick(SEGMENTS, _choice(_uniform(ids, seed, 23), SEGMENT_WEIGHTS)),
            "signup_date": pa.array(first_signup + signup_days, pa.int32()).cast(pa.date32()),
        },
        schema=CUSTOMERS_SCHEMA,
    )
