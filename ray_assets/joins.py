"""Joins sized for the cluster: a broadcast join for a small dimension, a hash join otherwise.

Ray Data 2.60's `Dataset.join` is a hash shuffle: both sides are partitioned by key into
aggregator actors, which costs seconds of actor start-up and scheduling even when one side is a
customer table of a few thousand rows. When one side is small, sending it whole to every task of
the large side is the classic alternative (a broadcast hash join): the large side streams through
a `map_batches` that joins each batch with pyarrow, with no shuffle at all. Measured on 2 CPUs
(20k and 2M orders against 2,000 customers): 2.4 s and 3.1-4.6 s broadcast against 7-19 s and
8-14 s for the hash join.

The small side is executed when the join is built (on the driver, inside the asset's body): its
size has to be known to choose the plan, and it has to exist whole to be broadcast. Past
`max_broadcast_bytes` the join falls back to Ray Data's hash join on the already-executed side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

_log = logging.getLogger("ray_assets")

DEFAULT_MAX_BROADCAST_BYTES = 256 * 1024**2
"""The largest small side that is broadcast: every worker of a node maps it from the object
store without copying it, so it costs one copy per node, not one per task."""

BROADCASTABLE_JOIN_TYPES = {
    "inner": "inner",
    "left_outer": "left outer",
    "left_semi": "left semi",
    "left_anti": "left anti",
}
"""Ray Data's join type -> pyarrow's. Only joins that keep or drop rows of the large (left) side
can run batch by batch: right and full outer joins must see every left row before they can emit
the right rows that matched none."""


def shuffle_partitions() -> int:
    """Hash partitions for a join or groupby in this process: what `RayResource` sized to the
    cluster (`DataContext.default_hash_shuffle_parallelism`), for `Dataset.join`'s required
    `num_partitions`."""
    from ray.data import DataContext

    return DataContext.get_current().default_hash_shuffle_parallelism


def broadcast_join(
    left: ray.data.Dataset,
    right: ray.data.Dataset,
    on: str | Sequence[str],
    *,
    join_type: str = "inner",
    right_on: str | Sequence[str] | None = None,
    left_suffix: str | None = None,
    right_suffix: str | None = None,
    max_broadcast_bytes: int = DEFAULT_MAX_BROADCAST_BYTES,
) -> ray.data.Dataset:
    """Join the large, streaming `left` with the small `right` by sending `right` to every task.

    Same result as `left.join(right, join_type, num_partitions, on=..., right_on=...)`: left's
    columns, then right's non-key columns; rows in no particular order. `right` runs now; when it
    is larger than `max_broadcast_bytes`, the join is Ray Data's hash join with
    `shuffle_partitions()` partitions instead, and the log says so.
    """
    import ray

    if join_type not in BROADCASTABLE_JOIN_TYPES:
        raise ValueError(
            f"broadcast_join cannot do a {join_type!r} join: only "
            f"{sorted(BROADCASTABLE_JOIN_TYPES)} keep the large (left) side's rows batch by "
            "batch; use Dataset.join for right and full outer joins"
        )
    left_keys = _key_list(on)
    right_keys = _key_list(right_on) if right_on is not None else left_keys
    if len(left_keys) != len(right_keys):
        raise ValueError(
            f"broadcast_join: {len(left_keys)} left key(s) {left_keys} but "
            f"{len(right_keys)} right key(s) {right_keys}"
        )
    small = right.materialize()
    small_bytes = small.size_bytes()
    if small_bytes > max_broadcast_bytes:
        _log.info(
            f"broadcast_join: the right side holds {small_bytes / 1024**2:.0f} MiB, more than "
            f"max_broadcast_bytes={max_broadcast_bytes / 1024**2:.0f} MiB: hash join instead"
        )
        return left.join(
            small,
            join_type=join_type,
            num_partitions=shuffle_partitions(),
            on=tuple(left_keys),
            right_on=tuple(right_keys),
            left_suffix=left_suffix,
            right_suffix=right_suffix,
        )
    whole_table = (
        ray.remote(_concat_blocks)
        .options(num_cpus=0)
        .remote(_schema_of(small), *small.to_arrow_refs())
    )
    return left.map_batches(
        _join_batch,
        batch_format="pyarrow",
        zero_copy_batch=True,
        fn_kwargs={
            "small_table": [whole_table],  # in a list: Ray resolves top-level refs of fn_kwargs
            "left_keys": left_keys,
            "right_keys": right_keys,
            "join_type": BROADCASTABLE_JOIN_TYPES[join_type],
            "left_suffix": left_suffix,
            "right_suffix": right_suffix,
        },
    )


def _key_list(keys: str | Sequence[str]) -> list[str]:
    return [keys] if isinstance(keys, str) else list(keys)


def _schema_of(small: ray.data.Dataset) -> pa.Schema:
    """The small side's columns, which its blocks may not carry: a filter that kept no rows
    leaves blocks without columns, and a left outer join must still add them (as nulls)."""
    schema = small.schema()
    if schema is None:
        raise ValueError(
            "broadcast_join: the right side has no rows and no schema, so its columns are "
            "unknown; give it a schema (e.g. select_columns) or use Dataset.join"
        )
    return schema.base_schema


def _concat_blocks(schema: pa.Schema, *blocks: pa.Table) -> pa.Table:
    """One table of the small side, built in a task so the driver never holds it."""
    import pyarrow as pa

    with_rows = [block for block in blocks if block.num_rows]
    if not with_rows:
        return schema.empty_table()
    return pa.concat_tables(with_rows, promote_options="permissive").combine_chunks()


def _join_batch(
    batch: pa.Table,
    small_table: list[Any],
    left_keys: list[str],
    right_keys: list[str],
    join_type: str,
    left_suffix: str | None,
    right_suffix: str | None,
) -> pa.Table:
    """Join one batch of the large side with the whole small side, single-threaded: the task
    already has its CPU, and pyarrow's own threads would compete with the node's other tasks."""
    import ray

    small = ray.get(small_table[0])
    small = _keys_typed_like(small, batch, left_keys, right_keys)
    return batch.join(
        small,
        keys=left_keys,
        right_keys=right_keys,
        join_type=join_type,
        left_suffix=left_suffix,
        right_suffix=right_suffix,
        use_threads=False,
    )


def _keys_typed_like(
    small: pa.Table, batch: pa.Table, left_keys: list[str], right_keys: list[str]
) -> pa.Table:
    """pyarrow joins only keys of one type; a dimension read as int32 against facts in int64
    (or a string against a large_string) is cast to the large side's key type."""
    for left_key, right_key in zip(left_keys, right_keys, strict=True):
        wanted = batch.schema.field(left_key).type
        index = small.schema.get_field_index(right_key)
        if small.schema.field(index).type != wanted:
            small = small.set_column(index, right_key, small[right_key].cast(wanted))
    return small
