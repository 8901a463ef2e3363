"""What every warehouse connector does the same way with a run's `PartitionSlice`: the slice's
keys typed as the table's columns, the SQL condition that selects them with bound parameters,
the rows to write as one checked stream of Arrow batches.

Shared by `ray_assets.connectors.sql`, `.snowflake` and `.bigquery`; it imports none of them, so
each connector stays usable alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from ray_assets.errors import PartitionColumnError, StrayPartitionValuesError

if TYPE_CHECKING:
    from ray_assets.partition_slice import PartitionSlice


class Dialect(Protocol):
    """How a database writes a placeholder and a quoted name."""

    def placeholder(self, number: int) -> str: ...

    def quote(self, name: str) -> str: ...


@dataclass
class Statement:
    """SQL text and its bound parameters, in placeholder order: built together so that their
    order cannot drift apart, and no value is ever part of the text."""

    session: Dialect
    text: str = ""
    params: list[Any] = field(default_factory=list)

    def param(self, value: Any) -> str:
        self.params.append(value)
        return self.session.placeholder(len(self.params))

    def one_of(self, column: str, values: Sequence[Any]) -> str:
        if not values:
            return "1 = 0"
        return f"{self.session.quote(column)} IN ({', '.join(self.param(v) for v in values)})"


def slice_condition(statement: Statement, keys: Sequence[Mapping[str, Any]]) -> str:
    """The condition true for the rows of `keys` (one mapping of column to typed value per
    partition key; a key matches when all its columns do)."""
    if not keys:
        return "1 = 0"
    columns = list(keys[0])
    if len(columns) == 1:
        return statement.one_of(columns[0], [key[columns[0]] for key in keys])
    return " OR ".join(
        "("
        + " AND ".join(f"{statement.session.quote(c)} = {statement.param(key[c])}" for c in columns)
        + ")"
        for key in keys
    )


def typed_keys(partition: PartitionSlice | None, schema: pa.Schema) -> list[dict[str, Any]] | None:
    """Per partition key, its value in each partition column, typed as the column is; None for
    no slice or an unpartitioned one (every row)."""
    from ray_assets.partition_slice import partition_value_scalar

    if partition is None or not partition.is_partitioned:
        return None

    missing = [c for c in partition.columns if c not in schema.names]
    if missing:
        raise PartitionColumnError(
            f"asset {partition.asset_key}: no partition column {missing} in the data; it "
            f"has {schema.names}"
        )
    types = {c: schema.field(c).type for c in partition.columns}
    return [
        {
            c: partition_value_scalar(text, types[c])
            for c, text in zip(partition.columns, values, strict=True)
        }
        for values in partition.stored_values(types)
    ]


def arrow_stream(data: Any) -> tuple[Iterable[pa.RecordBatch], pa.Schema]:
    """The data (a Ray Dataset or an Arrow table) as a stream of record batches in types a
    warehouse holds, and its schema. A Dataset streams: its blocks are never all in memory."""
    from ray_assets.storage.arrow_schema import delta_schema

    if isinstance(data, pa.Table):
        schema = delta_schema(data.schema)
        return data.cast(schema).to_batches(), schema
    tables = iter(data.iter_batches(batch_format="pyarrow", batch_size=None))
    first = next(tables, None)
    if first is None:
        arrow_schema = data.schema()
        schema = delta_schema(arrow_schema.base_schema if arrow_schema else pa.schema([]))
        return [], schema
    schema = delta_schema(first.schema)

    def stream() -> Iterator[pa.RecordBatch]:
        yield from first.cast(schema).to_batches()
        for table in tables:
            yield from table.cast(schema).to_batches()

    return stream(), schema


def checked_rows(
    batches: Iterable[pa.RecordBatch], slice_keys: Sequence[Mapping[str, Any]], what: str
) -> Iterator[pa.RecordBatch]:
    """The batches, each checked to hold only rows of the slice's keys: a row of another
    partition would be written where the next run of that partition cannot replace it."""
    columns = list(slice_keys[0]) if slice_keys else []
    allowed = {tuple(key[c] for c in columns) for key in slice_keys}
    for batch in batches:
        if columns and batch.num_rows:
            seen = pa.Table.from_batches([batch.select(columns)]).group_by(columns).aggregate([])
            stray = [tuple(row[c] for c in columns) for row in seen.to_pylist()]
            stray = [values for values in stray if values not in allowed]
            if stray:
                raise StrayPartitionValuesError(
                    f"{what}: rows with partition values {stray[:5]} outside the run's "
                    f"partitions; nothing was written"
                )
        yield batch


class RememberedErrors:
    """Batches to load, remembering the error that stopped them (a stray row, a failed Ray
    pipeline): a driver that consumes the stream reports it only as a failed stream."""

    def __init__(self, batches: Iterable[pa.RecordBatch]) -> None:
        self._batches = iter(batches)
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        try:
            return next(self._batches)
        except StopIteration:
            raise
        except BaseException as error:
            self.error = error
            raise

    def reraise(self, load: Callable[[], Any]) -> Any:
        """`load()`, whose failure is reported as the stream's own error when it had one."""
        try:
            return load()
        except Exception:
            if self.error is not None:
                raise self.error from None
            raise
