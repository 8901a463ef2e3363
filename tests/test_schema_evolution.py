"""Schema drift under each `schema_evolution` policy, on real Delta tables: refused with a diff,
merged, widened or overwritten exactly as configured, and never a value cast behind the back."""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ray_assets import (
    DeltaIOManager,
    DeltaStore,
    PartitionSlice,
    RayResource,
    SchemaMismatchError,
    ray_asset,
)
from tests.conftest import delta_version, failure_text

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")
BASE = pa.table(
    {
        "day": ["2024-01-01", "2024-01-02"],
        "qty": pa.array([1, 2], pa.int32()),
        "price": [1.5, 2.5],
    }
)
DRIFTS = {
    # a source grows a column
    "new_column": pa.table(
        {"day": ["2024-01-02"], "qty": pa.array([3], pa.int32()), "price": [3.5], "note": ["n"]}
    ),
    # an integer column turns into text
    "int_to_string": pa.table({"day": ["2024-01-02"], "qty": ["3"], "price": [3.5]}),
    # '6' arrives in a float column
    "text_in_float": pa.table(
        {"day": ["2024-01-02"], "qty": pa.array([3], pa.int32()), "price": ["6"]}
    ),
    # a source widens a column
    "int32_to_int64": pa.table(
        {"day": ["2024-01-02"], "qty": pa.array([2**40], pa.int64()), "price": [3.5]}
    ),
}
ACCEPTED = {
    "strict": set(),
    "add_columns": {"new_column"},
    "widen": {"new_column", "int32_to_int64"},
}


def day_slice(days: list[str]) -> PartitionSlice:
    return PartitionSlice.from_keys(DAILY, days, "day", asset_key="facts")


def rows(store: DeltaStore, days: list[str]) -> list[dict]:
    return sorted(
        store.read(day_slice(days)).take_all(), key=lambda row: (row["day"], str(row["qty"]))
    )


@pytest.mark.parametrize("policy", sorted(ACCEPTED))
@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_partition_write_under_policy(ray_session, tmp_path, policy, drift) -> None:
    import ray.data

    store = DeltaStore(str(tmp_path / "facts"))
    store.write(ray.data.from_arrow(BASE), day_slice(["2024-01-01", "2024-01-02"]))
    data = ray.data.from_arrow(DRIFTS[drift])
    if drift not in ACCEPTED[policy]:
        with pytest.raises(SchemaMismatchError) as raised:
            store.write(data, day_slice(["2024-01-02"]), schema_evolution=policy)
        message = str(raised.value)
        assert "asset 'facts', partition '2024-01-02'" in message
        assert f"schema_evolution='{policy}'" in message
        shown = {
            "new_column": "+ note: string (in the data, not in the table)",
            "int_to_string": "~ qty: table has int32, data has string",
            "text_in_float": "~ price: table has double, data has string",
            "int32_to_int64": "~ qty: table has int32, data has int64",
        }[drift]
        assert shown in message
        assert delta_version(tmp_path / "facts") == 0
        return
    result = store.write(data, day_slice(["2024-01-02"]), schema_evolution=policy)
    assert result.committed and result.schema_changes
    assert any("schema changed" in warning for warning in result.warnings)
    back = rows(store, ["2024-01-01", "2024-01-02"])
    if drift == "new_column":
        assert result.schema.names == ["day", "qty", "price", "note"]
        assert back == [
            {"day": "2024-01-01", "qty": 1, "price": 1.5, "note": None},  # older rows: null
            {"day": "2024-01-02", "qty": 3, "price": 3.5, "note": "n"},
        ]
    else:
        assert result.schema.field("qty").type == pa.int64()
        assert [row["qty"] for row in back] == [1, 2**40]  # the old file read up-cast


def test_narrower_data_is_stored_in_the_wider_column_under_widen(ray_session, tmp_path) -> None:
    import ray.data

    store = DeltaStore(str(tmp_path / "facts"))
    wide = BASE.set_column(1, "qty", pa.array([1, 2], pa.int64()))
    store.write(ray.data.from_arrow(wide), day_slice(["2024-01-01", "2024-01-02"]))
    narrow = DRIFTS["int32_to_int64"].set_column(1, "qty", pa.array([7], pa.int16()))
    result = store.write(
        ray.data.from_arrow(narrow), day_slice(["2024-01-02"]), schema_evolution="widen"
    )
    assert result.schema.field("qty").type == pa.int64() and not result.schema_changes
    with pytest.raises(SchemaMismatchError, match="table has int64, data has int16"):
        store.write(ray.data.from_arrow(narrow), day_slice(["2024-01-02"]))


def test_overwrite_replaces_the_schema_of_a_whole_table_only(ray_session, tmp_path) -> None:
    import ray.data

    partitioned = DeltaStore(str(tmp_path / "facts"))
    partitioned.write(ray.data.from_arrow(BASE), day_slice(["2024-01-01", "2024-01-02"]))
    text = ray.data.from_arrow(DRIFTS["int_to_string"])
    with pytest.raises(SchemaMismatchError) as raised:
        partitioned.write(text, day_slice(["2024-01-02"]), schema_evolution="overwrite")
    assert "must replace the whole table" in str(raised.value)
    assert "1 partition(s) outside it hold 1 row(s)" in str(raised.value)
    assert delta_version(tmp_path / "facts") == 0
    # a run over every partition that holds rows may replace the schema
    both = pa.table({"day": ["2024-01-01", "2024-01-02"], "qty": ["a", "b"], "price": ["6", "7"]})
    result = partitioned.write(
        ray.data.from_arrow(both),
        day_slice(["2024-01-01", "2024-01-02"]),
        schema_evolution="overwrite",
    )
    assert result.schema.field("qty").type == pa.string()
    assert [row["price"] for row in rows(partitioned, ["2024-01-01", "2024-01-02"])] == ["6", "7"]

    whole = DeltaStore(str(tmp_path / "dimension"))
    unpartitioned = PartitionSlice.unpartitioned("dimension")
    whole.write(ray.data.from_arrow(BASE), unpartitioned)
    dropped = pa.table({"day": ["x"], "price": ["6"]})
    result = whole.write(ray.data.from_arrow(dropped), unpartitioned, schema_evolution="overwrite")
    assert result.schema.names == ["day", "price"] and result.table_row_count == 1
    assert whole.read(unpartitioned).take_all() == [{"day": "x", "price": "6"}]


def test_ray_asset_and_io_manager_carry_the_policy(ray_session, tmp_path) -> None:
    import ray.data

    state = {"table": BASE}

    @ray_asset(partitions_def=DAILY, partition_column="day", schema_evolution="add_columns")
    def facts(context: dg.AssetExecutionContext):
        return ray.data.from_arrow(state["table"].filter(pc.field("day") == context.partition_key))

    @dg.asset(
        partitions_def=DAILY,
        io_manager_key="delta_io_manager",
        metadata={"partition_expr": "day"},
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def plain(context: dg.AssetExecutionContext):
        return ray.data.from_arrow(state["table"].filter(pc.field("day") == context.partition_key))

    resources = {"ray": RayResource(), "delta_io_manager": DeltaIOManager(root_uri=str(tmp_path))}
    for table in (BASE, DRIFTS["new_column"]):
        state["table"] = table
        result = dg.materialize(
            [facts, plain], partition_key="2024-01-02", resources=resources, raise_on_error=False
        )
        if table is BASE:
            assert result.success
    # the asset's own policy merged the column; the plain asset took the IO manager's (strict)
    assert not result.success
    failures = result.get_step_failure_events()
    assert [event.step_key for event in failures] == ["plain"]
    assert "schema_evolution='strict'" in failure_text(result)
    assert (
        DeltaStore(str(tmp_path / "facts")).read(day_slice(["2024-01-02"])).take_all()[0]["note"]
        == "n"
    )
    with pytest.raises(Exception, match="schema_evolution must be one of"):
        ray_asset(schema_evolution="loose")(lambda: None)
