"""Declarative checks for `ray_asset`, decided before the commit.

    from ray_assets import checks, ray_asset

    @ray_asset(
        partitions_def=daily,
        partition_column="order_date",
        checks=[checks.not_null("customer_id"), checks.unique("order_id"),
                checks.between("amount", -10_000, 10_000, blocking=False)],
    )

Each check becomes a Dagster `AssetCheckSpec` of the asset. The write decides them from the
statistics and rows it already has in hand, before anything is committed: a failed blocking
check leaves the table at its previous version and fails the run; a failed non-blocking one
commits and shows as a warning. In a range run every partition gets its own result.

This package's constructors import neither Dagster nor Ray (the checks ride along to the Ray
tasks that write the data).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ray_assets.checks.rules import (
    AcceptedValues,
    Between,
    Check,
    Expression,
    NotNull,
    RowCount,
    SchemaIs,
    Unique,
    as_arrow_type,
    check_name,
    comparable_bound,
)

__all__ = [
    "Check",
    "Freshness",
    "accepted_values",
    "between",
    "expression",
    "freshness",
    "freshness_checks",
    "not_null",
    "row_count",
    "schema",
    "unique",
]


def _names(columns: str | Iterable[str]) -> tuple[str, ...]:
    names = (columns,) if isinstance(columns, str) else tuple(columns)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"a check needs one or more column names, not {columns!r}")
    return names


def not_null(
    columns: str | Iterable[str], *, blocking: bool = True, name: str | None = None
) -> Check:
    """No null in `columns`: decided from the null counts of the written files."""
    names = _names(columns)
    return NotNull(names, name or check_name("not_null", *names), blocking)


def unique(
    columns: str | Iterable[str], *, blocking: bool = True, name: str | None = None
) -> Check:
    """No two rows of a partition share the values of `columns` (rows with a null key are
    skipped). Within each partition: a key that decides the partition (an order id that
    belongs to one day) is then unique in the whole table."""
    names = _names(columns)
    return Unique(names, name or check_name("unique", *names), blocking)


def between(
    column: str,
    low: Any = None,
    high: Any = None,
    *,
    blocking: bool = True,
    name: str | None = None,
) -> Check:
    """Every non-null value of `column` lies in [`low`, `high`] (None: unbounded); NaN fails."""
    if low is None and high is None:
        raise ValueError(f"between('{column}') needs a low or a high bound")
    if low is not None and high is not None and low > high:
        raise ValueError(f"between('{column}', {low!r}, {high!r}): the low bound is above the high")
    return Between(
        _names(column)[0],
        comparable_bound(low),
        comparable_bound(high),
        name or check_name("between", column),
        blocking,
    )


def accepted_values(
    column: str, values: Iterable[Any], *, blocking: bool = True, name: str | None = None
) -> Check:
    """Every non-null value of `column` is one of `values` (add `not_null` to refuse nulls)."""
    accepted = tuple(dict.fromkeys(values))
    if not accepted:
        raise ValueError(f"accepted_values('{column}') needs at least one value")
    return AcceptedValues(
        _names(column)[0], accepted, name or check_name("accepted_values", column), blocking
    )


def row_count(
    min: int | None = None,  # noqa: A002 - the natural names at the call site
    max: int | None = None,  # noqa: A002
    *,
    blocking: bool = True,
    name: str | None = None,
) -> Check:
    """Each partition of the write (the table, when unpartitioned) holds `min` to `max` rows."""
    if min is None and max is None:
        raise ValueError("row_count() needs min= or max=")
    if min is not None and max is not None and min > max:
        raise ValueError(f"row_count(min={min}, max={max}): min is above max")
    return RowCount(min, max, name or "row_count", blocking)


def schema(
    expected: pa.Schema | Mapping[str, Any],
    *,
    allow_extra: bool = False,
    blocking: bool = True,
    name: str | None = None,
) -> Check:
    """The written columns have exactly these types (and no other column unless
    `allow_extra`). Types are pyarrow types or their names (`"int64"`, `"string"`)."""
    pairs = (
        [(f.name, f.type) for f in expected]
        if isinstance(expected, pa.Schema)
        else list(expected.items())
    )
    if not pairs:
        raise ValueError("schema() needs at least one column")
    typed = tuple((str(n), as_arrow_type(kind)) for n, kind in pairs)
    return SchemaIs(typed, allow_extra, name or "schema", blocking)


def expression(
    name: str, rule: Any, *, description: str | None = None, blocking: bool = True
) -> Check:
    """A row-level rule: every written row must satisfy `rule`, a Ray Data expression
    (`col("amount") >= 0`) or a pyarrow compute expression. Rows where it is null pass."""
    if not hasattr(rule, "to_pyarrow") and type(rule).__name__ != "Expression":
        raise TypeError(
            f"expression('{name}'): the rule must be a Ray Data expression "
            f"(ray.data.expressions.col('a') > 0) or a pyarrow.compute.Expression, not "
            f"{type(rule).__name__}"
        )
    return Expression(rule, check_name(name), description or str(rule).replace("\n", " "), blocking)


@dataclass(frozen=True)
class Freshness:
    """How fresh the asset must be; `ray_asset` turns it into the asset's Dagster
    `FreshnessPolicy`, which Dagster evaluates and shows (Dagster's own freshness checks)."""

    fail_after: dt.timedelta | None = None
    warn_after: dt.timedelta | None = None
    deadline_cron: str | None = None
    timezone: str = "UTC"

    def policy(self) -> Any:
        import dagster as dg

        if self.deadline_cron is not None:
            assert self.fail_after is not None
            return dg.FreshnessPolicy.cron(
                deadline_cron=self.deadline_cron,
                lower_bound_delta=self.fail_after,
                timezone=self.timezone,
            )
        assert self.fail_after is not None
        return dg.FreshnessPolicy.time_window(
            fail_window=self.fail_after, warn_window=self.warn_after
        )


def freshness(
    fail_after: dt.timedelta,
    *,
    warn_after: dt.timedelta | None = None,
    deadline_cron: str | None = None,
    timezone: str = "UTC",
) -> Freshness:
    """The asset must have been materialized within `fail_after` (a warning after
    `warn_after`); with `deadline_cron`, within `fail_after` before each cron deadline
    (`"0 9 * * *"`: by 9:00 every day, with data from the last `fail_after`)."""
    if warn_after is not None and warn_after >= fail_after:
        raise ValueError("freshness(): warn_after must be shorter than fail_after")
    if deadline_cron is not None and warn_after is not None:
        raise ValueError("freshness(): a deadline_cron policy has no warn_after")
    return Freshness(fail_after, warn_after, deadline_cron, timezone)


def freshness_checks(
    assets: Iterable[Any], *, sensor_name: str = "freshness_checks_sensor"
) -> list[Any]:
    """Dagster's freshness checks (and their sensor) for the assets that declare
    `checks.freshness(...)`; see `ray_assets.checks.dagster_freshness`."""
    from ray_assets.checks.dagster_freshness import freshness_checks as build

    return build(list(assets), sensor_name=sensor_name)
