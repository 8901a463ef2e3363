"""`RayTableAsset`, the Dagster Component: Ray assets declared in `defs.yaml`, loaded from a defs
folder as `dg` loads them, materialized over real tables; and the `dg` CLI on the project."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ray_assets import DeltaIOManager, DeltaStore, PartitionSlice, RayResource
from ray_assets.components import Condition, RayTableAsset
from ray_assets.components.row_filter import split_equalities
from tests.conftest import delta_log_rows

DAY = "2024-01-02"
ROOT = Path(__file__).resolve().parents[1]

SOURCE_ROWS = pa.table(
    {
        "day": [f"2024-01-0{1 + i // 10}" for i in range(30)],
        "id": list(range(30)),
        "amount": [float(i % 10 * 100) for i in range(30)],
        "note": ["gift" if i % 3 == 0 else "plain" for i in range(30)],
    }
)
"""Three days of ten orders; amounts 0-900 within each day, every third order a gift."""

DECLARED = {
    "big_orders": """
        type: ray_assets.components.RayTableAsset
        attributes:
          key: sales/big_orders
          source: {type: delta, uri: "{{ context.project_root }}/partner/orders"}
          columns: [id, amount]
          row_filter:
            - {column: amount, op: ">=", value: 500}
          partitions: {start_date: "2024-01-01", column: day}
          group_name: sales
          description: Orders of 500 or more.
        """,
    "cheaper_big_order_ids": """
        type: ray_assets.components.RayTableAsset
        attributes:
          key: sales/cheaper_big_order_ids
          source: {type: asset, key: sales/big_orders}
          columns: [id]
          row_filter:
            - {column: amount, op: "<", value: 800}
          partitions: {start_date: "2024-01-01", column: day}
        """,
    "exported_gifts": """
        type: ray_assets.components.RayTableAsset
        attributes:
          key: exported_gifts
          source:
            type: parquet
            path: "{{ context.project_root }}/export"
            partitioning: hive
          row_filter:
            - {column: note, op: "==", value: gift}
          partitions: {start_date: "2024-01-01", column: day}
        """,
    "crm_gifts": """
        type: ray_assets.components.RayTableAsset
        attributes:
          key: crm_gifts
          source: {type: sql, table: orders, resource_key: crm, shard_column: id}
          columns: [id, amount]
          row_filter:
            - {column: note, op: in, value: [gift]}
            - {column: amount, op: ">", value: 300}
          partitions: {start_date: "2024-01-01", column: day}
        """,
}


def declared_project(root: Path, components: dict[str, str]) -> str:
    """A dg project at `root` whose defs folder holds `components` (folder -> defs.yaml); its
    root module gets a fresh name, so each project imports anew. Returns that name."""
    module = f"declared_{uuid.uuid4().hex[:12]}"
    (root / "pyproject.toml").write_text(
        f'[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\nroot_module = "{module}"\n'
    )
    for package in (root / module, root / module / "defs"):
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
    for name, text in components.items():
        (root / module / "defs" / name).mkdir()
        (root / module / "defs" / name / "defs.yaml").write_text(textwrap.dedent(text))
    return module


def rows_of(table_uri: Path) -> list[dict]:
    return sorted(
        DeltaStore(str(table_uri)).read(PartitionSlice.unpartitioned("x")).take_all(),
        key=lambda row: row["id"],
    )


@pytest.fixture(scope="module")
def declared_run(ray_session, tmp_path_factory):
    """The four declared assets, loaded from their defs folder and materialized for one day."""
    from deltalake import write_deltalake

    from ray_assets.connectors.sql import SqlDatabase

    root = tmp_path_factory.mktemp("declared")
    write_deltalake(str(root / "partner" / "orders"), SOURCE_ROWS, partition_by=["day"])
    pq.write_to_dataset(SOURCE_ROWS, root / "export", partition_cols=["day"])
    crm = SqlDatabase(url=f"sqlite:///{root}/crm.db")
    crm.write(SOURCE_ROWS, "orders")
    declared_project(root, DECLARED)
    sys.path.insert(0, str(root))
    try:
        declared = dg.load_from_defs_folder(path_within_project=root)
    finally:
        sys.path.remove(str(root))
    resources = {
        "ray": RayResource(address=ray_session),
        "delta_io_manager": DeltaIOManager(root_uri=str(root / "tables")),
        "crm": crm,
    }
    defs = dg.Definitions.merge(declared, dg.Definitions(resources=resources))
    result = dg.materialize(list(declared.assets or []), partition_key=DAY, resources=resources)
    return {"result": result, "defs": defs, "tables": root / "tables"}


def test_yaml_declares_ray_assets_with_their_key_group_partitions_and_description(
    declared_run,
) -> None:
    graph = declared_run["defs"].resolve_asset_graph()
    big = graph.get(dg.AssetKey(["sales", "big_orders"]))
    assert big.group_name == "sales"
    assert big.description == "Orders of 500 or more."
    assert big.partitions_def == dg.DailyPartitionsDefinition(start_date="2024-01-01")
    assert {"ray", "deltalake"} <= set(big.kinds)
    assert graph.get(dg.AssetKey(["sales", "cheaper_big_order_ids"])).parent_keys == {big.key}


def test_kinds_and_the_io_manager_key_reach_the_asset() -> None:
    asset = RayTableAsset.resolve_from_yaml(
        "key: x\nsource: {type: delta, uri: t}\nkinds: [parquet]\n"
        "io_manager_key: parquet_io_manager"
    ).build_asset()
    (spec,) = asset.specs
    assert spec.kinds == {"ray", "parquet"}  # a storage kind given: no 'deltalake'
    assert asset.get_io_manager_key_for_asset_key(asset.key) == "parquet_io_manager"


def test_a_delta_source_gives_the_runs_day_its_columns_and_its_rows(declared_run) -> None:
    assert declared_run["result"].success
    table = declared_run["tables"] / "sales" / "big_orders"
    assert delta_log_rows(table) == {DAY: 5}  # the run's day only
    assert rows_of(table) == [
        {"id": i, "amount": float(i % 10 * 100), "day": DAY} for i in range(15, 20)
    ]


def test_an_asset_source_is_loaded_projected_and_filtered(declared_run) -> None:
    rows = rows_of(declared_run["tables"] / "sales" / "cheaper_big_order_ids")
    assert rows == [{"id": i, "day": DAY} for i in (15, 16, 17)]  # amount tested, then dropped


def test_a_parquet_source_reads_the_runs_day_folder_and_the_rows_asked_for(declared_run) -> None:
    rows = rows_of(declared_run["tables"] / "exported_gifts")
    assert [row["id"] for row in rows] == [12, 15, 18]
    assert {row["day"] for row in rows} == {DAY}
    assert set(rows[0]) == {"day", "id", "amount", "note"}  # no columns: all of them


def test_a_sql_source_keeps_the_runs_day_and_the_rows_asked_for(declared_run) -> None:
    rows = rows_of(declared_run["tables"] / "crm_gifts")
    assert rows == [{"id": i, "amount": float(i % 10 * 100), "day": DAY} for i in (15, 18)]


def test_a_sql_read_binds_the_equalities_and_leaves_the_rest_to_ray() -> None:
    conditions = [
        Condition(column="note", op="in", value=["gift"]),
        Condition(column="amount", op=">", value=300),
        Condition(column="note", op="==", value="plain"),  # one per column: this one stays
    ]
    where, rest = split_equalities(conditions)
    assert where == {"note": ["gift"]}
    assert rest == conditions[1:]


@pytest.mark.parametrize(
    ("attributes", "named"),
    [
        ("source: {type: delta}", "attributes.source.tagged-union[DeltaSource,ParquetSource,"
         "SqlSource,AssetSource].delta.uri"),
        ("source: {type: delta, uri: t}\ncolums: [a]", "attributes.colums"),
        ("source: {type: delta, uri: t}\nrow_filter: [{column: a, op: '=>', value: 1}]",
         "attributes.row_filter.list[function-after[_value_fits_the_operator(), Condition]].0.op"),
        ("source: {type: delta, uri: t}\nrow_filter: [{column: a, op: in, value: 1}]",
         "'in' takes a list of values (column 'a')"),
        ("source: {type: delta, uri: t}\npartitions: {start_date: '2024-13-01', column: d}",
         "attributes.partitions.DailyPartitions.start_date"),
    ],
)  # fmt: skip
def test_bad_yaml_fails_to_load_naming_the_field(tmp_path, attributes, named) -> None:
    text = "type: ray_assets.components.RayTableAsset\nattributes:\n  key: x\n" + textwrap.indent(
        attributes, "  "
    )
    declared_project(tmp_path, {"bad": text})
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(Exception) as raised:  # noqa: B017 - Dagster wraps pydantic's error
            dg.load_from_defs_folder(path_within_project=tmp_path)
    finally:
        sys.path.remove(str(tmp_path))
    assert "bad" in str(raised.value)  # Dagster names the component's folder ...
    assert named in str(raised.value.__cause__)  # ... and its cause the field


def test_a_key_dagster_cannot_take_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="each '/'-separated part takes only letters") as raised:
        RayTableAsset.resolve_from_yaml("key: sales/x-y\nsource: {type: delta, uri: t}")
    assert raised.value.errors()[0]["loc"] == ("key",)


def test_a_uri_with_credentials_is_refused_without_repeating_them() -> None:
    with pytest.raises(ValueError, match="storage_options") as raised:
        RayTableAsset.resolve_from_yaml("key: x\nsource: {type: delta, uri: 's3://k:hunter2@b/t'}")
    assert "give the URI without credentials or query (s3://b/t)" in str(raised.value)


def test_the_readme_example_declares_an_asset_over_a_reference_table() -> None:
    from definitions import defs as reference

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Components and the `dg` CLI")[1].split("\n## ")[0]
    (text,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    document = yaml.safe_load(text)
    assert document["type"] == "ray_assets.components.RayTableAsset"
    asset = RayTableAsset.resolve_from_dict(document["attributes"]).build_asset()
    graph = dg.Definitions.merge(reference, dg.Definitions(assets=[asset])).resolve_asset_graph()
    upstream = graph.get(dg.AssetKey("clean_orders"))
    assert graph.get(asset.key).parent_keys == {upstream.key}
    assert graph.get(asset.key).partitions_def == upstream.partitions_def
    declared = {column.name for column in upstream.metadata["dagster/column_schema"].columns}
    attributes = document["attributes"]
    tested = [condition["column"] for condition in attributes["row_filter"]]
    assert {*attributes["columns"], *tested} <= declared


@pytest.mark.slow
def test_dg_scaffolds_a_declared_asset_that_checks_and_lists_in_the_project(tmp_path) -> None:
    """On a copy of the project: `dg scaffold defs` writes a `defs.yaml` into the reference
    location's defs folder, then `dg check defs` and `dg list defs` load the location with it."""
    for part in ("pyproject.toml", "definitions", "resources"):
        source = ROOT / part
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, tmp_path / part)
    dg_command = str(Path(sys.executable).parent / "dg")
    environment = {**os.environ, "RAY_ASSETS_TABLE_ROOT": str(tmp_path / "data")}

    def dg_run(*arguments: str) -> str:
        done = subprocess.run(
            [dg_command, *arguments],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    dg_run(
        "scaffold", "defs", "ray_assets.components.RayTableAsset", "large_orders",
        "--delta-uri", "data/clean_orders",
    )  # fmt: skip
    scaffolded = (tmp_path / "definitions" / "declared" / "large_orders" / "defs.yaml").read_text()
    assert "type: ray_assets.components.RayTableAsset" in scaffolded
    assert "key: large_orders" in scaffolded and "uri: data/clean_orders" in scaffolded
    assert "All definitions loaded successfully." in dg_run("check", "defs")
    listed = {
        asset["asset_key"] for asset in json.loads(dg_run("list", "defs", "--json"))["assets"]
    }
    assert {"large_orders", "clean_orders", "raw_orders", "customers"} <= listed
