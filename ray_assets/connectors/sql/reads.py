"""A SQL read as a Ray Dataset: one read task per shard, each one bounded query.

The driver plans: it probes the result's schema and, for a sharded read, the shard column's
range (one `MIN`/`MAX`/`COUNT` query), then builds one statement per shard. Each read task
connects, runs its statement and streams its Arrow batches. The connection URL, which holds the
password, reaches the tasks as an object in Ray's object store (`ray.put`): task arguments and
the pickled read tasks hold only its reference.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import ray  # noqa: TID253 - imported lazily by SqlDatabase.read
import ray.data  # noqa: TID253
from ray.data.block import BlockMetadata  # noqa: TID253
from ray.data.datasource import Datasource, ReadTask  # noqa: TID253

from ray_assets.connectors.sql.sessions import open_session


@dataclass(frozen=True)
class ShardQuery:
    """One read task's statement."""

    text: str
    params: tuple[Any, ...]


class SqlShardsDatasource(Datasource):
    """Reads each `ShardQuery` in a task of its own."""

    def __init__(
        self, url_ref: ray.ObjectRef, shards: Sequence[ShardQuery], schema: pa.Schema, name: str
    ) -> None:
        self._url_ref = url_ref
        self._shards = list(shards)
        self._schema = schema
        self._name = name

    def get_name(self) -> str:
        return self._name

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        tasks = []
        for shard in self._shards:
            metadata = BlockMetadata(
                num_rows=None, size_bytes=None, exec_stats=None, input_files=None
            )
            tasks.append(
                ReadTask(
                    lambda shard=shard, ref=self._url_ref, schema=self._schema: read_shard(
                        ref, shard, schema
                    ),
                    metadata,
                    schema=self._schema,
                    per_task_row_limit=per_task_row_limit,
                )
            )
        return tasks

    def dataset(self) -> ray.data.Dataset:
        """Exactly one read task (and block stream) per shard."""
        return ray.data.read_datasource(self, override_num_blocks=len(self._shards))


def read_shard(url_ref: Any, shard: ShardQuery, schema: pa.Schema) -> Iterator[pa.Table]:
    """The shard's rows, batch by batch, in the planned schema."""
    url = ray.get(url_ref) if isinstance(url_ref, ray.ObjectRef) else url_ref
    session = open_session(url)
    try:
        session.execute(shard.text, shard.params)
        read_any = False
        for batch in session.fetch_batches():
            if batch.num_rows:
                read_any = True
                yield _conformed(pa.Table.from_batches([batch]), schema)
        if not read_any:
            yield schema.empty_table()
    finally:
        session.close()


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with the planned schema: a batch of NULLs only, or a driver's narrower type for
    one shard, must not give blocks of different types."""
    table = table.replace_schema_metadata(None)
    if table.schema.equals(schema, check_metadata=False):
        return table
    return table.cast(schema)
