"""Arrow types as Delta stores them, and the column-by-column diff of two schemas.

Delta has no 64-bit-offset strings, no unsigned integers and only microsecond timestamps
(in UTC, or without a zone).
Data from pandas 3 arrives as `large_string`, which breaks Ray's own `write_delta` appends
("string vs large_string"); we normalise every block before it is written so the files, the
table schema and the comparison all speak the same types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pyarrow as pa

from ray_assets.errors import SchemaMismatchError, UnstorableValueError

_SQL_TYPE_NAMES = {
    "integer": pa.int64(),
    "bigint": pa.int64(),
    "smallint": pa.int16(),
    "text": pa.string(),
    "varchar": pa.string(),
    "boolean": pa.bool_(),
    "float8": pa.float64(),
    "real": pa.float32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}
_TIMESTAMP_NAME = re.compile(r"^timestamp\[(s|ms|us|ns)(?:, tz=(.+))?\]$", re.IGNORECASE)
_DECIMAL_NAME = re.compile(r"^decimal(?:128)?\((\d+), ?(\d+)\)$")


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
    try:
        return table.cast(schema, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
        raise _unstorable_column(table, schema, error) from None


def _unstorable_column(table: pa.Table, schema: pa.Schema, error: Exception) -> Exception:
    """The cast error, told for the first column whose values cannot be stored exactly."""
    for name in schema.names:
        column, target = table.column(name), schema.field(name).type
        if column.type == target:
            continue
        try:
            column.cast(target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as cause:
            return UnstorableValueError(
                f"column '{name}': values of type {column.type} cannot be stored exactly as "
                f"Delta type {target} ({type(cause).__name__}: {cause}). Convert the column in "
                "the pipeline first (for example round timestamps to microseconds, or cast "
                "unsigned integers that exceed int64 to a decimal or a string)"
            )
    return UnstorableValueError(f"{type(error).__name__}: {error}")


def arrow_type_from_name(name: str) -> pa.DataType | None:
    """The Arrow type a declared column type names (`str(pa_type)` or a common SQL name).

    `dagster/column_schema` types are free text; ray_assets writes them as `str(arrow_type)`,
    so the same text declares a column's type. Unknown names give None.
    """
    text = name.strip().lower()
    if text in _SQL_TYPE_NAMES:
        return _SQL_TYPE_NAMES[text]
    timestamp = _TIMESTAMP_NAME.match(name.strip())  # the zone keeps its case
    if timestamp:
        return pa.timestamp(timestamp.group(1).lower(), tz=timestamp.group(2))
    decimal = _DECIMAL_NAME.match(text)
    if decimal:
        return pa.decimal128(int(decimal.group(1)), int(decimal.group(2)))
    try:
        return pa.type_for_alias(text)
    except ValueError:
        return None


def contains_null_type(kind: pa.DataType) -> bool:
    """Whether `kind` is, or nests, Arrow's `null` type (Delta's `void`)."""
    if pa.types.is_null(kind):
        return True
    if pa.types.is_struct(kind):
        return any(contains_null_type(f.type) for f in kind)
    if pa.types.is_map(kind):
        return contains_null_type(kind.key_type) or contains_null_type(kind.item_type)
    if hasattr(kind, "value_type"):
        return contains_null_type(kind.value_type)
    return False


def with_known_types(
    schema: pa.Schema, *sources: pa.Schema | Mapping[str, pa.DataType] | None
) -> pa.Schema:
    """`schema` with every null-typed column given the first type a source knows for it.

    A column whose values are all null in a block arrives typed `null`; the table (or an earlier
    block, or the asset's declared schema) knows what it really is.
    """
    fields = []
    for field in schema:
        if contains_null_type(field.type):
            for source in sources:
                known = _type_in(source, field.name)
                if known is not None and not contains_null_type(known):
                    field = field.with_type(known)
                    break
        fields.append(field)
    return pa.schema(fields)


def _type_in(source: pa.Schema | Mapping[str, pa.DataType] | None, name: str) -> pa.DataType | None:
    if source is None:
        return None
    if isinstance(source, pa.Schema):
        return source.field(name).type if name in source.names else None
    return source.get(name)


def refuse_untyped_columns(schema: pa.Schema) -> None:
    """Refuse a column with no type: Delta would store it as `void` and refuse every later write."""
    untyped = [field.name for field in schema if contains_null_type(field.type)]
    if untyped:
        raise SchemaMismatchError(
            f"column(s) {untyped} have no type: every value is null, so Arrow typed them "
            "`null`, which Delta stores as `void` (a later write with real values would be "
            "refused forever). Give the column a type in the pipeline (e.g. "
            "`pa.array(values, type=pa.float64())` or a cast), or declare it in the asset's "
            '`dagster/column_schema` metadata (dg.TableColumn("name", "double"))'
        )


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
