"""SQL text with bound parameters: the select of a table or query, its filters, its shards.

Every value (a partition key, a filter value, a shard bound) becomes a placeholder and a bound
parameter; only quoted names and fixed keywords are ever part of the text. A `Statement` is the
text and its parameters, built together so that their order cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ray_assets.connectors.slices import Statement, slice_condition
from ray_assets.connectors.sql.sessions import Session


@dataclass(frozen=True)
class Source:
    """A table (`schema.table` allowed) or a query with its own parameters, in the database's
    placeholder style ($1 on PostgreSQL, ? on SQLite, :p1 through SQLAlchemy)."""

    table: str | None = None
    query: str | None = None
    query_params: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise ValueError("give a table or a query, not both and not neither")

    def describe(self) -> str:
        return f"table {self.table}" if self.table else "query"


def select(
    session: Session,
    source: Source,
    *,
    columns: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    slice_values: Sequence[Mapping[str, Any]] | None = None,
    shard: Callable[[Statement], str] | None = None,
    select_list: str | None = None,
    limit: int | None = None,
) -> Statement:
    """`SELECT columns FROM source WHERE <where> AND <slice> [AND <shard>]` with bound values.

    `where` maps a column to a value or a list of values; `slice_values` holds one mapping of
    column to typed value per partition key (a key matches when all its columns do). `shard`
    builds one more condition on this statement, after the others, so that its parameters
    follow theirs ("" for none).
    """
    statement = Statement(session)
    statement.params.extend(source.query_params)
    if source.table is not None:
        origin = f"{session.table(source.table)} AS src"
    else:
        origin = f"({source.query}) AS src"
    projection = select_list or (
        ", ".join(session.quote(name) for name in columns) if columns else "*"
    )
    conditions = []
    for column, value in (where or {}).items():
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        conditions.append(statement.one_of(column, values))
    if slice_values is not None:
        conditions.append(slice_condition(statement, slice_values))
    if shard is not None and (condition := shard(statement)):
        conditions.append(condition)
    text = f"SELECT {projection} FROM {origin}"
    if conditions:
        text += " WHERE " + " AND ".join(f"({c})" for c in conditions)
    statement.text = text
    if limit is not None:
        statement.text += f" LIMIT {int(limit)}"
    return statement


def shard_bounds(low: Any, high: Any, shards: int) -> list[tuple[Any, Any]]:
    """`shards` ranges [lo, hi) covering [low, high] (the last one closed), as evenly as the
    column's type allows: integers, floats, decimals, dates and timestamps."""
    if low is None or high is None:
        return []
    to_number, from_number = _numeric_view(low)
    start, stop = to_number(low), to_number(high)
    if isinstance(start, int):  # whole steps: never more shards than values
        span = stop - start + 1
        count = max(1, min(shards, span))
        edges = [start + span * index // count for index in range(count + 1)]
    else:
        span, count = stop - start, max(1, shards)
        edges = [start + span * index / count for index in range(count + 1)]
    return [(from_number(edges[i]), from_number(edges[i + 1])) for i in range(count)]


def _numeric_view(value: Any) -> tuple[Any, Any]:
    if isinstance(value, bool):
        raise TypeError("a boolean column cannot be split into ranges")
    if isinstance(value, dt.datetime):
        zone = value.tzinfo
        epoch = dt.datetime(1970, 1, 1, tzinfo=zone)
        return (
            lambda v: (v - epoch) // dt.timedelta(microseconds=1),
            lambda n: epoch + dt.timedelta(microseconds=int(n)),
        )
    if isinstance(value, dt.date):
        return (lambda v: v.toordinal(), lambda n: dt.date.fromordinal(int(n)))
    if isinstance(value, int):
        return (lambda v: v, lambda n: int(n))
    if isinstance(value, float):
        return (lambda v: v, lambda n: float(n))
    import decimal

    if isinstance(value, decimal.Decimal):
        return (lambda v: float(v), lambda n: decimal.Decimal(str(n)))
    raise TypeError(f"cannot split a column of {type(value).__name__} values into ranges")
