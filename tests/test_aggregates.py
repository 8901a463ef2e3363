"""aggregate_by: the groupby's result for few groups, combined per task without a shuffle."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from ray_assets import ROWS, aggregate_by

SPEC = {
    "total": ("amount", "sum"),
    "rows": (ROWS, "count"),
    "priced": ("amount", "count"),
    "low": ("amount", "min"),
    "high": ("amount", "max"),
    "average": ("amount", "mean"),
}


def _orders(rows: int = 2_000, blocks: int = 5):
    import ray.data

    amounts = [None if i % 11 == 0 else float(i % 97) - 5.0 for i in range(rows)]
    return ray.data.from_arrow(
        pa.table(
            {
                "day": [f"2024-01-0{1 + i % 3}" for i in range(rows)],
                "region": [f"r{i % 4}" for i in range(rows)],
                "amount": amounts,
                "only_nulls": pa.nulls(rows, pa.int64()),
            }
        )
    ).repartition(blocks)


def _expected(rows: int = 2_000) -> dict[tuple[str, str], dict[str, float | int | None]]:
    """The same aggregation by hand, in Python."""
    table = _orders(rows, 1).to_arrow_refs()
    import ray

    data = pa.concat_tables(ray.get(table)).to_pylist()
    groups: dict[tuple[str, str], list] = {}
    for row in data:
        groups.setdefault((row["day"], row["region"]), []).append(row["amount"])
    expected = {}
    for key, amounts in groups.items():
        present = [a for a in amounts if a is not None]
        expected[key] = {
            "total": sum(present) if present else None,
            "rows": len(amounts),
            "priced": len(present),
            "low": min(present) if present else None,
            "high": max(present) if present else None,
            "average": sum(present) / len(present) if present else None,
        }
    return expected


def _by_key(dataset) -> dict[tuple[str, str], dict]:
    rows = dataset.take_all()
    return {(r["day"], r["region"]): {k: r[k] for k in SPEC} for r in rows}


def test_every_aggregation_matches_the_groups_by_hand(ray_session) -> None:
    result = aggregate_by(_orders(), ["day", "region"], SPEC)
    assert list(result.schema().names) == ["day", "region", *SPEC]
    got, expected = _by_key(result), _expected()
    assert got.keys() == expected.keys() and len(got) == 12
    for key, values in expected.items():
        for name, value in values.items():
            assert got[key][name] == pytest.approx(value), (key, name)


def test_the_same_result_as_ray_datas_groupby(ray_session) -> None:
    from ray.data.aggregate import Count, Mean, Sum

    ours = aggregate_by(
        _orders(),
        ["day", "region"],
        {"total": ("amount", "sum"), "rows": (ROWS, "count"), "average": ("amount", "mean")},
    ).take_all()
    theirs = (
        _orders()
        .groupby(["day", "region"])
        .aggregate(
            Sum("amount", alias_name="total"),
            Count(alias_name="rows"),
            Mean("amount", alias_name="average"),
        )
        .take_all()
    )
    key = lambda row: (row["day"], row["region"])  # noqa: E731
    for mine, other in zip(sorted(ours, key=key), sorted(theirs, key=key), strict=True):
        assert key(mine) == key(other) and mine["rows"] == other["rows"]
        assert math.isclose(mine["total"], other["total"])
        assert math.isclose(mine["average"], other["average"])


def test_a_group_of_nulls_sums_to_null(ray_session) -> None:
    rows = aggregate_by(
        _orders(), "region", {"s": ("only_nulls", "sum"), "m": ("only_nulls", "mean")}
    ).take_all()
    assert len(rows) == 4 and {(r["s"], r["m"]) for r in rows} == {(None, None)}


def test_nothing_in_gives_nothing_out(ray_session) -> None:
    from ray.data.expressions import col

    empty = _orders().filter(expr=col("region") == "nowhere")
    assert aggregate_by(empty, ["day", "region"], SPEC).count() == 0


def test_aggregations_that_do_not_combine_are_refused(ray_session) -> None:
    import ray.data

    with pytest.raises(ValueError, match="'median'.*Dataset.groupby"):
        aggregate_by(ray.data.range(3), "id", {"m": ("id", "median")})
    with pytest.raises(ValueError, match="only 'count' can count rows"):
        aggregate_by(ray.data.range(3), "id", {"m": (ROWS, "sum")})
    with pytest.raises(ValueError, match="at least one key"):
        aggregate_by(ray.data.range(3), [], {"m": ("id", "sum")})


def test_the_result_is_ray_groupbys(ray_session) -> None:
    """The same groups and values as Ray's own hash-shuffle `groupby().aggregate()`, whose work
    aggregate_by replaces for few groups."""
    from ray.data.aggregate import Count, Max, Mean, Min, Sum

    ours = _by_key(aggregate_by(_orders(), ["day", "region"], SPEC))
    theirs = _by_key(
        _orders()
        .groupby(["day", "region"])
        .aggregate(
            Sum("amount", alias_name="total"),
            Count(alias_name="rows"),
            Count("amount", ignore_nulls=True, alias_name="priced"),
            Min("amount", alias_name="low"),
            Max("amount", alias_name="high"),
            Mean("amount", alias_name="average"),
        )
    )
    assert ours.keys() == theirs.keys() and len(ours) == 12
    for key, row in ours.items():
        for name, value in row.items():
            assert math.isclose(value, theirs[key][name]), (key, name, value, theirs[key][name])


def _by_key(dataset) -> dict[tuple[str, str], dict[str, float]]:
    rows = dataset.take_all()
    return {(r["day"], r["region"]): {n: r[n] for n in SPEC} for r in rows}


def test_dictionary_keys_group_as_their_values(ray_session) -> None:
    """Keys read as Arrow dictionaries (`read_parquet_files(dictionary_columns=...)`) arrive
    with a dictionary per block, each different; batches that join several blocks, and the
    partials of all tasks, must still group by value."""
    import ray.data

    plain = pa.concat_tables(ray.get(_orders(blocks=1).to_arrow_refs()))
    pieces = [plain.slice(start, 301) for start in range(0, plain.num_rows, 301)]
    encoded = [
        piece.set_column(0, "day", piece["day"].dictionary_encode()).set_column(
            1, "region", piece["region"].dictionary_encode()
        )
        for piece in pieces
    ]
    assert not encoded[0]["day"].chunk(0).dictionary.equals(encoded[1]["day"].chunk(0).dictionary)
    dataset = ray.data.from_arrow(encoded).map_batches(
        lambda batch: batch, batch_format="pyarrow", batch_size=1_000
    )
    got = _by_key(aggregate_by(dataset, ["day", "region"], SPEC))
    expected = _expected()
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        for name, value in values.items():
            assert got[key][name] == pytest.approx(value), (key, name)
