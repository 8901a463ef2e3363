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

from ray_assets.connectors.read_tasks import FixedReadsDatasource
from ray_assets.connectors.sql.sessions import open_session


@dataclass(frozen=True)
class ShardQuery:
    """One read task's statement."""

    text: str
    params: tuple[Any, ...]


def shards_dataset(
    url_ref: ray.ObjectRef,
    shards: Sequence[ShardQuery],
    schema: pa.Schema,
    name: str,
    what: str = "SqlDatabase read",
) -> ray.data.Dataset:
    """Exactly one read task (and block stream) per shard. `what` (the source, password
    hidden) heads the error of a shard whose read fails."""
    count = len(shards)
    reads = [
        (
            lambda shard=shard, index=index: read_shard(
                url_ref, shard, schema, f"{what}, shard {index + 1} of {count}"
            ),
            None,
        )
        for index, shard in enumerate(shards)
    ]
    return FixedReadsDatasource(name, schema, reads).dataset()


def read_shard(
    url_ref: Any, shard: ShardQuery, schema: pa.Schema, what: str = "SqlDatabase read"
) -> Iterator[pa.Table]:
    """The shard's rows, batch by batch, in the planned schema.

    A database error (the server ended the connection mid-stream, a statement timeout) ends
    the task with a `SqlDatabaseError` naming the source and the shard, its password scrubbed:
    the pipeline fails and its write commits nothing, so the rerun reads the shard whole."""
    from ray_assets.connectors.sql.urls import scrub
    from ray_assets.errors import SqlDatabaseError
    from ray_assets.storage.ray_errors import describe_cause

    url = ray.get(url_ref) if isinstance(url_ref, ray.ObjectRef) else url_ref
    try:
        session = open_session(url)
    except Exception as error:
        cause = scrub(describe_cause(error), url).strip()
        raise SqlDatabaseError(f"{what}: cannot connect: {cause}") from None
    try:
        try:
            session.execute(shard.text, shard.params)
            batches = session.fetch_batches()
            read_any = False
            for batch in batches:
                if batch.num_rows:
                    read_any = True
                    yield _conformed(pa.Table.from_batches([batch]), schema)
        except Exception as error:
            cause = scrub(describe_cause(error), url).strip()
            raise SqlDatabaseError(f"{what}: the read failed: {cause}") from None
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
