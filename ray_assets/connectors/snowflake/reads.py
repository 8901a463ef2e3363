"""A Snowflake result as a Ray Dataset, fetched in parallel from its Arrow result batches.

The driver runs the query once; Snowflake keeps the result as chunks that `get_result_batches`
describes, each fetchable on its own, by any process, without a connection or credentials (a
chunk is a short-lived pre-signed download). The batches are spread over read tasks in
contiguous groups of about equal rows and reach them through Ray's object store; each task
downloads its chunks as Arrow and yields them in the planned schema.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import ray  # noqa: TID253 - imported lazily by SnowflakeDatabase.read
import ray.data  # noqa: TID253

from ray_assets.connectors.read_tasks import FixedReadsDatasource


def result_batches_dataset(
    batches: Sequence[Any], tasks: int, schema: pa.Schema, name: str
) -> ray.data.Dataset:
    """One read task per group of result batches."""
    reads = []
    for group in spread([batch.rowcount or 0 for batch in batches], tasks):
        ref = ray.put([batches[i] for i in group])
        rows = sum(batches[i].rowcount or 0 for i in group)
        reads.append((lambda ref=ref: fetch_batches(ref, schema), rows))
    return FixedReadsDatasource(name, schema, reads).dataset()


def spread(rows: Sequence[int], tasks: int) -> list[list[int]]:
    """Batch indices in at most `tasks` contiguous groups of about equal rows (result order
    is kept within and across groups); never an empty group."""
    if not rows:
        return []
    tasks = max(1, min(tasks, len(rows)))
    total = sum(rows)
    groups: list[list[int]] = [[]]
    seen = 0
    for index, count in enumerate(rows):
        boundary = total * len(groups) / tasks
        if groups[-1] and seen + count / 2 >= boundary and len(groups) < tasks:
            groups.append([])
        groups[-1].append(index)
        seen += count
    return groups


def fetch_batches(ref: Any, schema: pa.Schema) -> Iterator[pa.Table]:
    """The group's chunks, downloaded one at a time, in the planned schema."""
    batches = ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref
    for batch in batches:
        yield conformed(batch.to_arrow(), schema)


def planned_schema(first: pa.Table) -> pa.Schema:
    """The schema every block gets: Snowflake sends each chunk's integers in the narrowest
    width that holds them, so a NUMBER(38,0) column can arrive as int8 in one chunk and int64
    in the next; integers are int64 throughout, and the driver's field metadata goes."""
    fields = [
        pa.field(f.name, pa.int64() if pa.types.is_integer(f.type) else f.type, f.nullable)
        for f in first.schema
    ]
    return pa.schema(fields)


def conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    table = table.replace_schema_metadata(None)
    if table.schema.equals(schema, check_metadata=False):
        return table
    return table.cast(schema)
