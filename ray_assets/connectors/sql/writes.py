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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from ray_assets.connectors.slices import (
    RememberedErrors,
    Statement,
    checked_rows,
    slice_condition,
)
from ray_assets.connectors.sql.sessions import Session


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
        checked = checked_rows(batches, slice_keys, what) if slice_keys is not None else batches
        source = RememberedErrors(checked)
        reader = pa.RecordBatchReader.from_batches(schema, source)
        rows = source.reraise(lambda: session.append(table, reader))
        session.commit()
        return rows
    except BaseException:
        session.rollback()
        raise


def _lock_names(table: str, slice_keys: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """One lock name per partition of the slice (the whole table when unpartitioned)."""
    if slice_keys is None:
        return [table]
    return [f"{table}\x1f{sorted((c, str(v)) for c, v in key.items())}" for key in slice_keys]
