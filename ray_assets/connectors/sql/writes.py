"""Partition-scoped replace: a slice's rows swapped for new ones in one database transaction.

`DELETE` of the slice's rows and the bulk load of the new ones (COPY through ADBC on PostgreSQL)
run in one transaction on one connection: if anything fails or the process dies before
`COMMIT`, the database rolls the transaction back and the table is as it was; a rerun replaces
the same rows again instead of adding them. Rows outside the slice are refused before commit.
Writers of the same partitions queue on a transaction-scoped lock per partition (PostgreSQL's
advisory locks), so two runs racing on a day leave exactly one run's rows, never both.
The table is created from the Arrow schema, in the same transaction, when it is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from ray_assets.connectors.sql.sessions import Session
from ray_assets.connectors.sql.statements import Statement, slice_condition
from ray_assets.errors import StrayPartitionValuesError


def replace_slice(
    session: Session,
    table: str,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    slice_keys: Sequence[Mapping[str, Any]] | None,
    what: str,
) -> int:
    """Replace the rows of `slice_keys` (all rows when None) with `batches`; commit; the rows.

    `slice_keys` holds one mapping of partition column to typed value per key. Nothing is
    committed unless every batch was loaded and every row belongs to the slice.
    """
    try:
        session.lock_for_replace(_lock_names(table, slice_keys))
        if not session.has_table(table):
            session.create(table, schema)
        delete = Statement(session)
        text = f"DELETE FROM {session.table(table)}"
        if slice_keys is not None:
            text += " WHERE " + slice_condition(delete, slice_keys)
        session.execute(text, delete.params)
        checked = _checked(batches, slice_keys, what) if slice_keys is not None else batches
        source = _Source(checked)
        reader = pa.RecordBatchReader.from_batches(schema, source)
        try:
            rows = session.append(table, reader)
        except Exception:
            if source.error is not None:  # the driver wraps it; the cause is the data's
                raise source.error from None
            raise
        session.commit()
        return rows
    except BaseException:
        session.rollback()
        raise


class _Source:
    """The batches to load, remembering the error that stopped them (a stray row, a failed Ray
    pipeline): the driver reports it only as a failed stream."""

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


def _lock_names(table: str, slice_keys: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """One lock name per partition of the slice (the whole table when unpartitioned)."""
    if slice_keys is None:
        return [table]
    return [f"{table}\x1f{sorted((c, str(v)) for c, v in key.items())}" for key in slice_keys]


def _checked(
    batches: Iterable[pa.RecordBatch], slice_keys: Sequence[Mapping[str, Any]], what: str
) -> Iterator[pa.RecordBatch]:
    """The batches, each checked to hold only rows of the slice's keys."""
    columns = list(slice_keys[0]) if slice_keys else []
    allowed = {tuple(key[c] for c in columns) for key in slice_keys}
    for batch in batches:
        if columns and batch.num_rows:
            seen = pa.Table.from_batches([batch.select(columns)]).group_by(columns).aggregate([])
            seen = seen.to_pylist()
            stray = [tuple(row[c] for c in columns) for row in seen]
            stray = [values for values in stray if values not in allowed]
            if stray:
                raise StrayPartitionValuesError(
                    f"{what}: rows with partition values {stray[:5]} outside the run's "
                    f"partitions; nothing was written"
                )
        yield batch
