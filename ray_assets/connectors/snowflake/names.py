"""Snowflake names and types: quoted identifiers, qualified tables, Arrow types as columns.

Every identifier is double-quoted, so it is case-sensitive as given: a table created by
ray_assets keeps the Arrow schema's lower-case names; Snowflake's own unquoted names are upper
case (`CUSTOMERS`), and are read by giving them so.
"""

from __future__ import annotations

import pyarrow as pa

from ray_assets.errors import UnstorableValueError


def quote(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"not a Snowflake identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def split_table(table: str) -> tuple[str | None, str | None, str]:
    """`db.schema.table`, `schema.table` or `table` as (database, schema, table)."""
    parts = table.split(".")
    if len(parts) > 3 or not all(parts):
        raise ValueError(
            f"not a table name: {table!r}; give table, schema.table or db.schema.table"
        )
    padded = [None] * (3 - len(parts)) + parts
    return padded[0], padded[1], padded[2]


def qualified(table: str) -> str:
    return ".".join(quote(part) for part in split_table(table) if part is not None)


def column_type(name: str, kind: pa.DataType) -> str:
    """The Snowflake type that holds an Arrow column without loss."""
    if pa.types.is_dictionary(kind):
        return column_type(name, kind.value_type)
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    if pa.types.is_integer(kind):
        return "NUMBER(38,0)"
    if pa.types.is_floating(kind):
        return "FLOAT"
    if pa.types.is_decimal(kind):
        return f"NUMBER({kind.precision},{kind.scale})"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "VARCHAR"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "BINARY"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_timestamp(kind):
        scale = {"s": 0, "ms": 3, "us": 6, "ns": 9}[kind.unit]
        return f"TIMESTAMP_TZ({scale})" if kind.tz else f"TIMESTAMP_NTZ({scale})"
    if pa.types.is_time(kind):
        return "TIME"
    raise UnstorableValueError(
        f"column {name!r} of type {kind} has no Snowflake column type here (lists, structs and "
        "maps would need VARIANT); cast or drop it before writing"
    )


def create_table(table: str, schema: pa.Schema) -> str:
    columns = ", ".join(f"{quote(f.name)} {column_type(f.name, f.type)}" for f in schema)
    return f"CREATE TABLE IF NOT EXISTS {qualified(table)} ({columns})"
