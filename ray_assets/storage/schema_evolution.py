"""What a write may change in its table's schema: the `schema_evolution` policy.

The policies form a ladder, each allowing what the one before allows and more:

* `strict` (the default): the data's columns and types equal the table's;
* `add_columns`: new columns are added to the table (nullable; older rows read them as null);
* `widen`: also a column's type may widen without loss (int8 -> int16 -> int32 -> int64,
  a 32-bit or smaller integer -> float64, float32 -> float64, a decimal with more digits), in
  either direction: narrower data is stored in the table's wider type, wider data widens the
  table's column;
* `overwrite`: any schema replaces the table's, but only by a write that replaces the whole
  table (every partition holding rows), since older files in another schema would remain.

Values are never converted implicitly: a column whose type changes in any other way (int to
string, string to float) is refused under every policy but `overwrite`, with the diff.
"""

from __future__ import annotations

from typing import Literal, get_args

import pyarrow as pa

from ray_assets.errors import RayAssetsError, SchemaMismatchError
from ray_assets.storage.arrow_schema import schema_diff

SchemaEvolution = Literal["strict", "add_columns", "widen", "overwrite"]
POLICIES: tuple[str, ...] = get_args(SchemaEvolution)
_RANK = {policy: index for index, policy in enumerate(POLICIES)}


def refuse_unknown_policy(value: str) -> SchemaEvolution:
    """Validate a `schema_evolution` value where it is configured, not at the first write."""
    if value not in _RANK:
        raise RayAssetsError(
            f"schema_evolution must be one of {list(POLICIES)}, not {value!r}: 'strict' refuses "
            "any change, 'add_columns' adds new columns, 'widen' also widens types losslessly, "
            "'overwrite' replaces the schema by a write of the whole table."
        )
    return value  # type: ignore[return-value]


def allows(policy: SchemaEvolution, step: SchemaEvolution) -> bool:
    """Whether `policy` allows what `step` allows."""
    return _RANK[policy] >= _RANK[step]


def widens(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether every value of type `source` is stored exactly as type `target` (and they differ)."""
    if source == target:
        return False
    if pa.types.is_signed_integer(source):
        if pa.types.is_signed_integer(target):
            return target.bit_width > source.bit_width
        return pa.types.is_float64(target) and source.bit_width <= 32
    if pa.types.is_float32(source):
        return pa.types.is_float64(target)
    if pa.types.is_decimal(source) and pa.types.is_decimal(target):
        return target.scale >= source.scale and (
            target.precision - target.scale >= source.precision - source.scale
        )
    return False


def evolve(table: pa.Schema, data: pa.Schema, policy: SchemaEvolution) -> pa.Schema:
    """The table's schema after storing `data` in it under `policy`, or `SchemaMismatchError`.

    The message lists the differences column by column and names the policy that would allow
    them.
    """
    if policy == "overwrite":
        return _nullable(data)
    refused: list[str] = []
    needs: set[str] = set()
    fields = []
    for field in table:
        if field.name not in data.names:
            refused.append(f"  - {field.name}: {field.type} (in the table, missing from the data)")
            fields.append(field)
            continue
        kind = data.field(field.name).type
        if kind == field.type or widens(kind, field.type):
            if kind != field.type:
                needs.add("widen")
            fields.append(field)
        elif widens(field.type, kind):
            needs.add("widen")
            fields.append(field.with_type(kind))
        else:
            refused.append(f"  ~ {field.name}: table has {field.type}, data has {kind}")
            fields.append(field)
    for field in data:
        if field.name not in table.names:
            needs.add("add_columns")
            fields.append(pa.field(field.name, field.type, True))
    not_allowed = sorted(step for step in needs if not allows(policy, step))  # type: ignore[arg-type]
    if refused or not_allowed:
        lines = schema_diff(table, data)
        hint = (
            "a dropped column or a type change that loses values is allowed only by "
            "schema_evolution='overwrite' (of the whole table)"
            if refused
            else f"schema_evolution='{not_allowed[-1]}' would allow it"
        )
        raise SchemaMismatchError(
            f"the data's schema differs from the table's under schema_evolution='{policy}' "
            f"({hint}), column by column:\n" + "\n".join(lines)
        )
    return pa.schema(fields)


def merge(left: pa.Schema, right: pa.Schema) -> pa.Schema | None:
    """The union of two schemas written by one write's tasks (the wider type of a shared
    column), or None when a shared column has types neither widens to the other."""
    fields = {field.name: field for field in left}
    for field in right:
        known = fields.get(field.name)
        if known is None:
            fields[field.name] = pa.field(field.name, field.type, True)
        elif known.type != field.type:
            if widens(known.type, field.type):
                fields[field.name] = known.with_type(field.type)
            elif not widens(field.type, known.type):
                return None
    return pa.schema(list(fields.values()))


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type, True) for f in schema])
