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
from ray.data.block import BlockMetadata  # noqa: TID253
from ray.data.datasource import Datasource, ReadTask  # noqa: TID253


class ResultBatchesDatasource(Datasource):
    """One read task per group of result batches."""

    def __init__(self, batches: Sequence[Any], tasks: int, schema: pa.Schema, name: str) -> None:
        self._groups = spread([batch.rowcount or 0 for batch in batches], tasks)
        self._refs = [ray.put([batches[i] for i in group]) for group in self._groups]
        self._rows = [sum(batches[i].rowcount or 0 for i in group) for group in self._groups]
        self._schema = schema
        self._name = name

    def get_name(self) -> str:
        return self._name

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        return [
            ReadTask(
                lambda ref=ref, schema=self._schema: fetch_batches(ref, schema),
                BlockMetadata(num_rows=rows, size_bytes=None, exec_stats=None, input_files=None),
                schema=self._schema,
                per_task_row_limit=per_task_row_limit,
            )
            for ref, rows in zip(self._refs, self._rows, strict=True)
        ]

    def dataset(self) -> ray.data.Dataset:
        if not self._refs:
            return ray.data.from_arrow(self._schema.empty_table())
        return ray.data.read_datasource(self, override_num_blocks=len(self._refs))


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
