"""broadcast_join: the same rows as Ray Data's hash join, without a shuffle while the right side is small."""

from __future__ import annotations

import logging

import pyarrow as pa
import pytest

from ray_assets import broadcast_join


def _orders(rows: int = 1_000, blocks: int = 4):
    import ray.data

    ids = list(range(rows))
    return ray.data.from_arrow(
        pa.table(
            {
                "order_id": ids,
                "customer_id": [i % 13 for i in ids],  # customers 10, 11, 12 are unknown
                "amount": [float(i) for i in ids],
            }
        )
    ).repartition(blocks)


def _customers(key_type: pa.DataType = pa.int64()):
    import ray.data

    return ray.data.from_arrow(
        pa.table(
            {
                "customer_id": pa.array(list(range(10)), key_type),
                "region": [f"region-{i % 3}" for i in range(10)],
            }
        )
    )


def _rows(dataset) -> list[tuple]:
    """Every row, sorted with None first: joins promise no order."""
    import ray

    table = pa.concat_tables(ray.get(dataset.to_arrow_refs()))
    rows = zip(*(table[name].to_pylist() for name in table.column_names), strict=True)
    return sorted(rows, key=lambda row: [(value is not None, value) for value in row])


def _columns(dataset) -> list[str]:
    return list(dataset.schema().names)


def _by_hand(join_type: str) -> list[tuple]:
    """The join computed row by row in Python, independently of pyarrow and Ray."""
    regions = {i: f"region-{i % 3}" for i in range(10)}
    rows = [(i, i % 13, float(i), regions.get(i % 13)) for i in range(1_000)]
    kept = [row for row in rows if row[3] is not None or join_type == "left_outer"]
    return sorted(kept, key=lambda row: [(value is not None, value) for value in row])


@pytest.mark.parametrize("join_type", ["inner", "left_outer"])
def test_broadcast_join_gives_the_joins_rows(ray_session, join_type) -> None:
    broadcast = broadcast_join(_orders(), _customers(), on="customer_id", join_type=join_type)
    assert _columns(broadcast) == ["order_id", "customer_id", "amount", "region"]
    assert _rows(broadcast) == _by_hand(join_type)


def test_broadcast_join_never_shuffles(ray_session) -> None:
    """The plan is the left side's read and one map: no hash-shuffle operator, no aggregators."""
    joined = broadcast_join(_orders(), _customers(), on="customer_id")
    operators = joined.materialize().stats()
    assert "MapBatches(_join_batch)" in operators
    assert "HashShuffle" not in operators and "Join" not in operators


def test_semi_and_anti_joins_keep_or_drop_left_rows(ray_session) -> None:
    orders, customers = _orders(), _customers()
    known = broadcast_join(orders, customers, on="customer_id", join_type="left_semi")
    unknown = broadcast_join(orders, customers, on="customer_id", join_type="left_anti")
    assert _columns(known) == ["order_id", "customer_id", "amount"]
    assert {row[1] for row in _rows(unknown)} == {10, 11, 12}
    assert known.count() + unknown.count() == 1_000


def test_keys_of_another_integer_type_still_match(ray_session) -> None:
    """A dimension stored as int32 against facts in int64 joins as the hash join would."""
    joined = broadcast_join(_orders(), _customers(pa.int32()), on="customer_id")
    assert joined.count() == sum(1 for i in range(1_000) if i % 13 < 10)


def test_an_empty_right_side_keeps_its_columns(ray_session) -> None:
    from ray.data.expressions import col

    customers = _customers().filter(expr=col("customer_id") < 0)
    joined = broadcast_join(_orders(), customers, on="customer_id", join_type="left_outer")
    rows = _rows(joined)
    assert len(rows) == 1_000 and {row[3] for row in rows} == {None}
    assert broadcast_join(_orders(), customers, on="customer_id").count() == 0


def test_a_right_side_over_the_limit_falls_back_to_the_hash_join(ray_session) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger("ray_assets")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        joined = broadcast_join(_orders(), _customers(), on="customer_id", max_broadcast_bytes=1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert any("hash join instead" in record.getMessage() for record in records)
    assert _rows(joined.select_columns(["order_id", "customer_id", "amount", "region"])) == (
        _by_hand("inner")
    )


def test_joins_that_need_the_whole_left_side_are_refused(ray_session) -> None:
    with pytest.raises(ValueError, match="cannot do a 'full_outer' join.*Dataset.join"):
        broadcast_join(_orders(), _customers(), on="customer_id", join_type="full_outer")
    with pytest.raises(ValueError, match="1 left key.*2 right key"):
        broadcast_join(
            _orders(),
            _customers(),
            on="customer_id",
            right_on=["customer_id", "region"],
        )
