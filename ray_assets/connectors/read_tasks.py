"""A Ray datasource whose read tasks are fixed when it is built: one per shard, chunk group or
stream, each one block stream. What the connectors' datasources have in common; Dagster-free,
since Ray workers unpickle the read tasks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyarrow as pa
import ray.data  # noqa: TID253 - imported lazily, by the connectors' reads modules
from ray.data.block import BlockMetadata  # noqa: TID253
from ray.data.datasource import Datasource, ReadTask  # noqa: TID253

Read = Callable[[], Iterable[pa.Table]]


class FixedReadsDatasource(Datasource):
    """Runs `reads` (a function per task, with the rows it will yield when known) as exactly
    that many read tasks, whatever parallelism Ray Data would pick."""

    def __init__(
        self, name: str, schema: pa.Schema, reads: Sequence[tuple[Read, int | None]]
    ) -> None:
        self._name = name
        self._schema = schema
        self._reads = list(reads)

    def get_name(self) -> str:
        return self._name

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        return [
            ReadTask(
                read,
                BlockMetadata(num_rows=rows, size_bytes=None, exec_stats=None, input_files=None),
                schema=self._schema,
                per_task_row_limit=per_task_row_limit,
            )
            for read, rows in self._reads
        ]

    def dataset(self) -> ray.data.Dataset:
        """One block stream per read; an empty dataset of the schema when there is none."""
        if not self._reads:
            return ray.data.from_arrow(self._schema.empty_table())
        return ray.data.read_datasource(self, override_num_blocks=len(self._reads))
