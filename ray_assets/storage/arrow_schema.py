"""Arrow types as Delta stores them, and the column-by-column diff of two schemas.

Delta has no 64-bit-offset strings, no unsigned integers and only microsecond timestamps
(in UTC, or without a zone).
Data from pandas 3 arrives as `large_string`, which breaks Ray's own `write_delta` appends
("string vs large_string"); we normalise every block before it is written so the files, the
table schema and the comparison all speak the same types.
"""

from __future__ import annotations

import pyarrow as pa


def delta_type(kind: pa.DataType) -> pa.DataType:
    """The Arrow type a value of type `kind` is stored as in a Delta table."""
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.binary()
    if pa.types.is_dictionary(kind):
        return delta_type(kind.value_type)
    if pa.types.is_unsigned_integer(kind):
        return {8: pa.int16(), 16: pa.int32(), 32: pa.int64(), 64: pa.int64()}[kind.bit_width]
    if pa.types.is_float16(kind):
        return pa.float32()
    if pa.types.is_timestamp(kind):
        # Delta's `timestamp` is an instant stored in UTC; `timestamp_ntz` has no zone.
        return pa.timestamp("us", tz="UTC" if kind.tz is not None else None)
    if pa.types.is_date64(kind):
        return pa.date32()
    if pa.types.is_large_list(kind) or pa.types.is_list_view(kind) or pa.types.is_list(kind):
        return pa.list_(pa.field("element", delta_type(kind.value_type), True))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, delta_type(f.type), True) for f in kind])
    if pa.types.is_map(kind):
        return pa.map_(delta_type(kind.key_type), delta_type(kind.item_type))
    return kind


def delta_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with every type as Delta stores it; every field nullable, metadata dropped."""
    return pa.schema([pa.field(f.name, delta_type(f.type), True) for f in schema])


def to_delta_types(table: pa.Table, target: pa.Schema | None = None) -> pa.Table:
    """Cast `table` to Delta's types, and to `target`'s column order when given.

    Casts are safe: an unsigned value that does not fit its signed type raises instead of
    wrapping around.
    """
    schema = delta_schema(table.schema)
    if target is not None:
        schema = pa.schema([target.field(name) for name in target.names])
        table = table.select(target.names)
    if table.schema.equals(schema, check_metadata=False):
        return table.replace_schema_metadata(None)
    return table.cast(schema, safe=True)


def schema_diff(expected: pa.Schema, actual: pa.Schema) -> list[str]:
    """Column-by-column differences from `expected` (the table) to `actual` (the data).

    Nullability and field metadata are ignored: Delta tables written here are nullable, and
    a block's nullability depends on whether it happened to hold a null.
    """
    lines = []
    for field in expected:
        if field.name not in actual.names:
            lines.append(f"  - {field.name}: {field.type} (in the table, missing from the data)")
        elif actual.field(field.name).type != field.type:
            lines.append(
                f"  ~ {field.name}: table has {field.type}, data has {actual.field(field.name).type}"
            )
    for field in actual:
        if field.name not in expected.names:
            lines.append(f"  + {field.name}: {field.type} (in the data, not in the table)")
    return lines
