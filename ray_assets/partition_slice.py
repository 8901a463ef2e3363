"""`PartitionSlice`: the one place where Dagster partitions become table filters.

A slice is the *exact* set of partition values a run reads or writes: a range covers its keys
and nothing else (dagster-deltalake's range bug is a predicate that covers only the first
key). Keys are validated against the partitions definition before any IO, and they only ever
leave this module as structured values (Delta filter tuples, Arrow/Ray expressions), never as
SQL text built from a key (CVE-2026-41490 was exactly that).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ray_assets.errors import PartitionColumnError, PartitionKeyError

if TYPE_CHECKING:
    import dagster as dg
    from ray.data.expressions import Expr

PartitionColumn = str | Mapping[str, str]
"""A column name, or for multi-partitions a mapping of dimension name to column name."""


@dataclass(frozen=True)
class PartitionSlice:
    """The exact partition values a run covers in one table.

    `keys` are Dagster partition keys (`None` for an unpartitioned asset: the whole table);
    `values[i]` is the tuple of partition-column values of `keys[i]`, one per column in
    `columns`. A partition column holds the key as written (`"2024-01-03"`); a `date` column
    holds the same text as a date, an integer column the key's digits, and a time-zone-aware
    `timestamp` column the start of the key's time window.
    """

    asset_key: str
    columns: tuple[str, ...]
    keys: tuple[str, ...] | None
    values: tuple[tuple[str, ...], ...]
    window_starts: tuple[tuple[dt.datetime | None, ...], ...] = ()
    """Per key and column, the start of the key's time window (None for non-time dimensions)."""

    # ---------------------------------------------------------------- constructors
    @classmethod
    def unpartitioned(cls, asset_key: str) -> PartitionSlice:
        """The whole table of an unpartitioned asset."""
        return cls(asset_key=asset_key, columns=(), keys=None, values=())

    @classmethod
    def from_keys(
        cls,
        partitions_def: dg.PartitionsDefinition | None,
        keys: Iterable[str] | None,
        partition_column: PartitionColumn | None,
        *,
        asset_key: str,
        dynamic_partitions_store: Any = None,
    ) -> PartitionSlice:
        """Slice of `keys` (any subset of the definition's keys, in any order).

        Keys that are not members of `partitions_def` raise `PartitionKeyError` naming the asset
        and the key; `dynamic_partitions_store` (a `DagsterInstance`) is needed to check keys of
        dynamic partitions.
        """
        if partitions_def is None:
            if keys:
                raise PartitionKeyError(
                    f"Asset '{asset_key}' is not partitioned, but partition keys {list(keys)[:5]} "
                    "were requested."
                )
            return cls.unpartitioned(asset_key)
        if keys is None:
            raise PartitionKeyError(
                f"Asset '{asset_key}' is partitioned; a run must name its partition keys."
            )
        columns, dimensions = _resolve_columns(partitions_def, partition_column, asset_key)
        keys = list(keys)
        if not keys:
            raise PartitionKeyError(empty_selection_message(asset_key))
        ordered_keys: list[str] = []
        seen: set[str] = set()
        for key in keys:
            key = str(key)
            if key not in seen:
                seen.add(key)
                ordered_keys.append(key)
        _validate_membership(partitions_def, ordered_keys, asset_key, dynamic_partitions_store)
        values = tuple(_values_of_key(partitions_def, key, dimensions) for key in ordered_keys)
        starts = tuple(
            _window_starts_of_key(partitions_def, key, dimensions) for key in ordered_keys
        )
        return cls(
            asset_key=asset_key,
            columns=columns,
            keys=tuple(ordered_keys),
            values=values,
            window_starts=starts,
        )

    @classmethod
    def from_key_range(
        cls,
        partitions_def: dg.PartitionsDefinition,
        key_range: dg.PartitionKeyRange,
        partition_column: PartitionColumn,
        *,
        asset_key: str,
        dynamic_partitions_store: Any = None,
    ) -> PartitionSlice:
        """Slice of every key from `key_range.start` to `key_range.end`, both included."""
        import dagster as dg

        _validate_membership(
            partitions_def, [key_range.start, key_range.end], asset_key, dynamic_partitions_store
        )
        with dg.partition_loading_context(dynamic_partitions_store=dynamic_partitions_store):
            keys = partitions_def.get_partition_keys_in_range(key_range)
        return cls.from_keys(
            partitions_def,
            keys,
            partition_column,
            asset_key=asset_key,
            dynamic_partitions_store=dynamic_partitions_store,
        )

    @classmethod
    def from_time_window(
        cls,
        partitions_def: dg.TimeWindowPartitionsDefinition,
        time_window: dg.TimeWindow,
        partition_column: str,
        *,
        asset_key: str,
    ) -> PartitionSlice:
        """Slice of every partition whose window lies in `[time_window.start, time_window.end)`."""
        import dagster as dg

        if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            raise PartitionColumnError(
                f"Asset '{asset_key}': a time window only selects partitions of a time-window "
                f"partitions definition, not {type(partitions_def).__name__}."
            )
        keys = partitions_def.get_partition_keys_in_time_window(time_window)
        return cls.from_keys(partitions_def, keys, partition_column, asset_key=asset_key)

    # ---------------------------------------------------------------- queries
    @property
    def is_partitioned(self) -> bool:
        return self.keys is not None

    @property
    def value_set(self) -> frozenset[tuple[str, ...]]:
        return frozenset(self.values)

    def column_types(self, schema: pa.Schema) -> dict[str, pa.DataType]:
        """The types of the slice's partition columns in `schema` (those it has)."""
        return {c: schema.field(c).type for c in self.columns if c in schema.names}

    def stored_values(self, column_types: Mapping[str, pa.DataType]) -> tuple[tuple[str, ...], ...]:
        """Per key, the partition values as Delta stores them in columns of `column_types`.

        The key text itself, except in a timestamp column: there, the UTC start of the key's
        time window (`"2024-11-03 05:00:00.000000"`), which is how Delta writes timestamps.
        """
        stored = []
        for index, value in enumerate(self.values):
            starts = self.window_starts[index] if self.window_starts else (None,) * len(value)
            stored.append(
                tuple(
                    _stored_text(text, start, column_types.get(column), column, self.asset_key)
                    for column, text, start in zip(self.columns, value, starts, strict=True)
                )
            )
        return tuple(stored)

    def key_of(self, values: tuple[str, ...]) -> str:
        """The Dagster partition key whose partition values are `values`."""
        return dict(zip(self.values, self.keys or (), strict=True))[values]

    def column_values(self, column: str) -> list[str]:
        """Distinct values of one partition column, in key order."""
        index = self.columns.index(column)
        return list(dict.fromkeys(value[index] for value in self.values))

    def is_rectangular(self) -> bool:
        """Whether the slice is the product of per-column value sets (always true for one column)."""
        size = 1
        for column in self.columns:
            size *= len(self.column_values(column))
        return size == len(self.value_set)

    def describe(self) -> str:
        """Short human text naming the asset and its partitions, for errors and logs."""
        if self.keys is None:
            return f"asset '{self.asset_key}' (unpartitioned)"
        if not self.keys:
            return f"asset '{self.asset_key}', no partitions"
        if len(self.keys) == 1:
            return f"asset '{self.asset_key}', partition '{self.keys[0]}'"
        return (
            f"asset '{self.asset_key}', partitions '{self.keys[0]}'..'{self.keys[-1]}' "
            f"({len(self.keys)} keys)"
        )

    def fingerprint(self) -> str:
        """Stable digest of the columns and values, for idempotency identifiers."""
        digest = hashlib.sha256()
        digest.update(repr((self.columns, sorted(self.values))).encode())
        return digest.hexdigest()[:16]

    # ---------------------------------------------------------------- filters
    def delta_partition_filters(
        self, column_types: Mapping[str, pa.DataType] | None = None
    ) -> list[tuple[str, str, list[str]]] | None:
        """Structured Delta partition filters (tuples) selecting exactly this slice.

        `None` for an unpartitioned slice (the whole table). A multi-dimensional slice must be
        a rectangle (every combination of its column values), which is what Dagster's ranges
        over multi-partitions are; another shape cannot be one Delta overwrite and is refused.
        """
        if self.keys is None:
            return None
        if not self.is_rectangular():
            raise PartitionColumnError(
                f"{self.describe()}: the partition keys do not form a rectangle over columns "
                f"{list(self.columns)}, so they cannot be replaced in one Delta commit. "
                "Materialize them in runs whose keys form a rectangle (a key range does)."
            )
        stored = self.stored_values(column_types or {})
        return [
            (column, "in", list(dict.fromkeys(value[index] for value in stored)))
            for index, column in enumerate(self.columns)
        ]

    def to_pyarrow_expression(self, schema: pa.Schema | None = None) -> pc.Expression | None:
        """Arrow filter expression selecting exactly this slice's rows.

        With `schema`, values are cast to each column's type (a `date32` column compares with
        dates, not strings).
        """
        if self.keys is None:
            return None
        if not self.values:
            return pc.scalar(False)

        def typed(column: str, values: Sequence[str]) -> pa.Array:
            kind = schema.field(column).type if schema is not None else pa.string()
            if pa.types.is_timestamp(kind):
                index = self.columns.index(column)
                starts = dict(
                    zip(
                        (v[index] for v in self.values),
                        (w[index] for w in self.window_starts),
                        strict=True,
                    )
                )
                return pa.array([starts[v] for v in values], kind)
            return pa.array(list(values), pa.string()).cast(kind)

        if self.is_rectangular():
            expression = None
            for column in self.columns:
                term = pc.field(column).isin(typed(column, self.column_values(column)))
                expression = term if expression is None else expression & term
            return expression
        expression = None
        for value in self.values:
            term = None
            for column, item in zip(self.columns, value, strict=True):
                equal = pc.field(column) == typed(column, [item])[0]
                term = equal if term is None else term & equal
            expression = term if expression is None else expression | term
        return expression

    def to_ray_expression(self) -> Expr | None:
        """Ray Data expression (`Dataset.filter(expr=...)`) for rectangular slices of string columns."""
        from ray.data.expressions import col

        if self.keys is None:
            return None
        if not self.is_rectangular():
            raise PartitionColumnError(
                f"{self.describe()}: a Ray expression is only built for rectangular slices."
            )
        expression = None
        for column in self.columns:
            term = col(column).is_in(self.column_values(column))
            expression = term if expression is None else expression & term
        return expression


def _resolve_columns(
    partitions_def: dg.PartitionsDefinition,
    partition_column: PartitionColumn | None,
    asset_key: str,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Columns (and the dimension each holds) for a partitions definition."""
    import dagster as dg

    if partition_column is None:
        raise PartitionColumnError(
            f"Asset '{asset_key}' is partitioned but names no partition column: pass "
            "partition_column='<column>' to ray_asset (or metadata={'partition_expr': '<column>'})."
        )
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        dimensions = tuple(partitions_def.partition_dimension_names)
        if not isinstance(partition_column, Mapping):
            raise PartitionColumnError(
                f"Asset '{asset_key}' has multi-partitions {list(dimensions)}: partition_column "
                f"must map each dimension to a column, e.g. {{{', '.join(repr(d) + ': ...' for d in dimensions)}}}."
            )
        missing = [d for d in dimensions if d not in partition_column]
        unknown = [d for d in partition_column if d not in dimensions]
        if missing or unknown:
            raise PartitionColumnError(
                f"Asset '{asset_key}': partition_column must map exactly the dimensions "
                f"{list(dimensions)}; missing {missing}, unknown {unknown}."
            )
        columns = tuple(partition_column[d] for d in dimensions)
    else:
        if isinstance(partition_column, Mapping):
            if len(partition_column) != 1:
                raise PartitionColumnError(
                    f"Asset '{asset_key}' has one partition dimension; partition_column must be "
                    "one column name."
                )
            partition_column = next(iter(partition_column.values()))
        dimensions = ("",)
        columns = (str(partition_column),)
    if len(set(columns)) != len(columns) or not all(columns):
        raise PartitionColumnError(
            f"Asset '{asset_key}': partition columns must be distinct, non-empty names; got {list(columns)}."
        )
    return columns, dimensions


def empty_selection_message(asset_key: str, key_range: dg.PartitionKeyRange | None = None) -> str:
    """Why a run that selects no partition is refused, naming the asset and the range."""
    selected = (
        f"the range '{key_range.start}'...'{key_range.end}' holds no partition key"
        if key_range is not None
        else "the run selects no partition key"
    )
    return (
        f"Asset '{asset_key}': {selected} (a reversed or empty range: its start must not come "
        "after its end). Nothing was read or written; give the range in order, e.g. "
        "--partition-range <first>...<last>."
    )


def _validate_membership(
    partitions_def: dg.PartitionsDefinition,
    keys: Sequence[str],
    asset_key: str,
    dynamic_partitions_store: Any,
) -> None:
    import dagster as dg

    for key in keys:
        if not isinstance(key, str) or not key:
            raise PartitionKeyError(
                f"Asset '{asset_key}': partition key {key!r} is not a non-empty string."
            )
        control = next((c for c in key if unicodedata.category(c) == "Cc"), None)
        if control is not None:  # NUL ends C strings; newlines split logs, paths and listings
            raise PartitionKeyError(
                f"Asset '{asset_key}': partition key {key!r} contains the control character "
                f"U+{ord(control):04X}, which no table path or log line can hold safely. "
                "Nothing was read or written."
            )
        try:
            with dg.partition_loading_context(dynamic_partitions_store=dynamic_partitions_store):
                member = partitions_def.has_partition_key(key)
        except (
            Exception
        ) as error:  # Dagster raises for malformed multi keys and unknown dynamic sets
            raise PartitionKeyError(
                f"Asset '{asset_key}': partition key '{key}' is not valid for its "
                f"{type(partitions_def).__name__}: {error}"
            ) from error
        if not member:
            raise PartitionKeyError(
                f"Asset '{asset_key}': partition key '{key}' is not a member of its "
                f"{type(partitions_def).__name__}{_describe_definition(partitions_def)}. "
                "Nothing was read or written."
            )


def _describe_definition(partitions_def: dg.PartitionsDefinition) -> str:
    import dagster as dg

    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        start = partitions_def.start.strftime(partitions_def.fmt)
        return (
            f" (starts {start}, format '{partitions_def.fmt}', timezone {partitions_def.timezone})"
        )
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
        return f" (dynamic set '{partitions_def.name}')"
    return ""


def _values_of_key(
    partitions_def: dg.PartitionsDefinition, key: str, dimensions: tuple[str, ...]
) -> tuple[str, ...]:
    import dagster as dg

    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        by_dimension = partitions_def.get_partition_key_from_str(key).keys_by_dimension
        return tuple(by_dimension[d] for d in dimensions)
    return (key,)


def _window_starts_of_key(
    partitions_def: dg.PartitionsDefinition, key: str, dimensions: tuple[str, ...]
) -> tuple[dt.datetime | None, ...]:
    import dagster as dg

    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        by_dimension = partitions_def.get_partition_key_from_str(key).keys_by_dimension
        starts = []
        for dimension in dimensions:
            definition = partitions_def.get_partitions_def_for_dimension(dimension)
            starts.append(
                definition.time_window_for_partition_key(by_dimension[dimension]).start
                if isinstance(definition, dg.TimeWindowPartitionsDefinition)
                else None
            )
        return tuple(starts)
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return (partitions_def.time_window_for_partition_key(key).start,)
    return (None,)


TIMESTAMP_TEXT = "%Y-%m-%d %H:%M:%S.%f"
"""How Delta writes a timestamp partition value: UTC, microseconds."""


def _stored_text(
    text: str,
    window_start: dt.datetime | None,
    kind: pa.DataType | None,
    column: str,
    asset_key: str,
) -> str:
    if kind is None or not pa.types.is_timestamp(kind):
        return text
    if kind.tz is None:
        raise PartitionColumnError(
            f"Asset '{asset_key}': partition column '{column}' is a timestamp without time zone; "
            "a partition key maps exactly only to a time-zone-aware timestamp (or use a string column)."
        )
    if window_start is None:
        raise PartitionColumnError(
            f"Asset '{asset_key}': partition column '{column}' is a timestamp, but its partition "
            "dimension is not a time window, so its keys do not map to instants."
        )
    return window_start.astimezone(dt.timezone.utc).strftime(TIMESTAMP_TEXT)


def canonical_partition_strings(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Text of each row's partition value, as it is compared with partition keys.

    Strings stay as written, dates become ISO dates, integers their digits. Other types are
    refused: a float or timestamp has no exact text a key could be compared with.
    """
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.cast(kind.value_type)
        kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return array.cast(pa.string())
    if pa.types.is_date32(kind) or pa.types.is_date64(kind) or pa.types.is_integer(kind):
        return array.cast(pa.string())
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        utc = array.cast(pa.timestamp("us", tz="UTC"))
        return pc.strftime(utc, format=TIMESTAMP_TEXT.replace(".%f", ""))  # %S has the micros
    raise PartitionColumnError(
        f"a partition column of type {kind} cannot hold partition keys exactly; use a string, "
        "date, integer or time-zone-aware timestamp column"
    )


def partition_value_scalar(value: str, kind: pa.DataType) -> Any:
    """The typed Python value of a partition value's text in a column of type `kind`."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return value
    if pa.types.is_date32(kind) or pa.types.is_date64(kind):
        return dt.date.fromisoformat(value)
    if pa.types.is_timestamp(kind):
        return dt.datetime.strptime(value, TIMESTAMP_TEXT).replace(tzinfo=dt.timezone.utc)
    return pa.array([value]).cast(kind)[0].as_py()


def canonical_partition_text(value: str, kind: pa.DataType) -> str | None:
    """`value` (a partition value's text, any writer's format) in ray_assets' canonical text for
    a column of type `kind`, or None when it is not a value of that type."""
    try:
        return partition_text(partition_value_scalar(value, kind))
    except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def partition_text(value: Any) -> str | None:
    """The text of a typed partition value as read from the Delta log (inverse of the above)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime(TIMESTAMP_TEXT)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
