"""read_parquet_files: external Parquet listed once on the driver, read with pushdown."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ray_assets import read_parquet_files


def _export(root: Path, files: int = 5, rows: int = 1_000) -> pa.Table:
    """`files` Parquet files (two in a subfolder), plus files that are not data; returns all rows."""
    tables = []
    for number in range(files):
        ids = list(range(number * rows, (number + 1) * rows))
        table = pa.table(
            {
                "id": ids,
                "valid": [i % 10 != 0 for i in ids],
                "amount": [i * 0.25 for i in ids],
                "note": [f"n{i % 7}" for i in ids],
            }
        )
        folder = root / "late" if number >= files - 2 else root
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-{number}.parquet", row_group_size=250)
        tables.append(table)
    (root / "_SUCCESS").write_text("")
    (root / ".part-9.parquet.tmp").write_text("half written")
    (root / "_delta_log").mkdir()
    pq.write_table(tables[0], root / "_delta_log" / "not-data.parquet")
    return pa.concat_tables(tables)


def _rows(dataset) -> pa.Table:
    import ray

    return pa.concat_tables(ray.get(dataset.to_arrow_refs())).sort_by("id")


def test_every_data_file_is_read_once_and_nothing_else(ray_session, tmp_path) -> None:
    everything = _export(tmp_path)
    dataset = read_parquet_files(str(tmp_path))
    assert _rows(dataset).equals(everything)
    assert sorted(Path(f).name for f in dataset.input_files()) == [
        f"part-{n}.parquet" for n in range(5)
    ]


def test_columns_and_filter_are_pushed_into_the_reader(ray_session, tmp_path) -> None:
    everything = _export(tmp_path)
    dataset = read_parquet_files(
        str(tmp_path), columns=["id", "amount"], filter=pc.field("valid") & (pc.field("id") < 2_500)
    )
    expected = everything.filter(pc.field("valid") & (pc.field("id") < 2_500)).select(
        ["id", "amount"]
    )
    assert dataset.schema().names == ["id", "amount"]
    assert _rows(dataset).equals(expected)
    stats = dataset.materialize().stats()
    assert "ParquetFiles" in stats and "FooterReader" not in stats


def test_hive_folders_become_columns(ray_session, tmp_path) -> None:
    for day in ("2024-01-01", "2024-01-02"):
        folder = tmp_path / f"day={day}"
        folder.mkdir()
        pq.write_table(pa.table({"id": [1, 2, 3]}), folder / "part-0.parquet")
    dataset = read_parquet_files(
        str(tmp_path), partitioning="hive", filter=pc.field("day") == "2024-01-02"
    )
    rows = _rows(dataset)
    assert rows.column_names == ["id", "day"] and rows["day"].to_pylist() == ["2024-01-02"] * 3


def test_a_missing_path_or_column_is_named(ray_session, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing at .*nowhere"):
        read_parquet_files(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .parquet files under .*empty"):
        read_parquet_files(str(tmp_path / "empty"))
    _export(tmp_path / "data")
    with pytest.raises(ValueError, match=r"no column \['price'\].*'amount'"):
        read_parquet_files(str(tmp_path / "data"), columns=["id", "price"])


def test_the_read_runs_in_the_same_tasks_as_the_map_after_it(ray_session, tmp_path) -> None:
    """One read task per file group, as many as Ray is told, so that Ray does not split their
    output into more blocks: a split read cannot fuse with the map after it, and every block
    would cross the object store once more."""
    from ray.data import DataContext

    everything = _export(tmp_path)
    context = DataContext.get_current()
    smallest_block = context.target_min_block_size
    context.target_min_block_size = 1024  # small files look as big to Ray as 800 MB do here
    try:
        dataset = read_parquet_files(str(tmp_path)).map_batches(
            lambda batch: batch, batch_format="pyarrow"
        )
        assert _rows(dataset).equals(everything)
        stats = dataset.materialize().stats()
    finally:
        context.target_min_block_size = smallest_block
    assert "ReadParquetFiles->MapBatches(<lambda>)" in stats and "SplitBlocks" not in stats


def test_dictionary_columns_hold_the_same_values(ray_session, tmp_path) -> None:
    """Strings read as Arrow dictionaries, straight from Parquet's dictionary pages, decode to
    exactly the strings a plain read gives, file partition columns included."""
    everything = _export(tmp_path / "export")
    dataset = read_parquet_files(
        str(tmp_path / "export"), dictionary_columns=["note"], filter=pc.field("valid")
    )
    assert pa.types.is_dictionary(dataset.schema().base_schema.field("note").type)
    rows = _rows(dataset)
    assert rows.cast(everything.schema).equals(everything.filter(pc.field("valid")))

    for day in ("2024-01-01", "2024-01-02"):
        folder = tmp_path / "hive" / f"day={day}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"id": [1, 2]}), folder / "part-0.parquet")
    days = _rows(
        read_parquet_files(str(tmp_path / "hive"), partitioning="hive", dictionary_columns=["day"])
    )["day"]
    assert pa.types.is_dictionary(days.type)
    assert sorted(days.cast(pa.string()).to_pylist()) == ["2024-01-01"] * 2 + ["2024-01-02"] * 2


def test_only_string_columns_are_read_as_dictionaries(ray_session, tmp_path) -> None:
    _export(tmp_path)
    with pytest.raises(ValueError, match="dictionary_columns 'amount' is double"):
        read_parquet_files(str(tmp_path), dictionary_columns=["amount"])
    with pytest.raises(ValueError, match=r"no column \['currency'\]"):
        read_parquet_files(str(tmp_path), dictionary_columns=["currency"])
