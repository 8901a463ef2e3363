"""Row restrictions for BigQuery's Storage Read API, which takes a filter as SQL text only.

With no bound parameters there, no value is ever written into the text as the user gave it:
numbers, dates and timestamps are rendered from their typed Python values, and every string
goes in base64 (`CAST(FROM_BASE64('eCcgT1Ig...') AS STRING)`), so a quote, a backslash or a
semicolon in a partition key or a filter value can only ever be data. Column names are quoted
with backticks, escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from typing import Any


def quote(name: str) -> str:
    if not name:
        raise ValueError("an empty column name")
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def literal(value: Any) -> str:
    """A GoogleSQL literal of `value` that cannot end early, whatever the value holds."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return f"CAST('{float(value)!r}' AS FLOAT64)"
    if isinstance(value, decimal.Decimal):
        return f"NUMERIC '{decimal.Decimal(value)}'"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return f"DATETIME '{value.isoformat(sep=' ')}'"
        return f"TIMESTAMP '{value.astimezone(dt.UTC).isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        encoded = base64.b64encode(value.encode()).decode("ascii")
        return f"CAST(FROM_BASE64('{encoded}') AS STRING)"
    raise TypeError(f"no BigQuery literal for a {type(value).__name__} value")


def one_of(column: str, values: Sequence[Any]) -> str:
    if not values:
        return "FALSE"
    return f"{quote(column)} IN ({', '.join(literal(v) for v in values)})"


def row_restriction(
    where: Mapping[str, Any] | None, slice_keys: Sequence[Mapping[str, Any]] | None
) -> str:
    """The filter of `where` (column -> value or list of values) and of the slice's keys."""
    conditions = []
    for column, value in (where or {}).items():
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        conditions.append(one_of(column, values))
    if slice_keys is not None:
        columns = list(slice_keys[0]) if slice_keys else []
        if not slice_keys:
            conditions.append("FALSE")
        elif len(columns) == 1:
            conditions.append(one_of(columns[0], [key[columns[0]] for key in slice_keys]))
        else:
            conditions.append(
                " OR ".join(
                    "(" + " AND ".join(f"{quote(c)} = {literal(key[c])}" for c in columns) + ")"
                    for key in slice_keys
                )
            )
    return " AND ".join(f"({c})" for c in conditions)
