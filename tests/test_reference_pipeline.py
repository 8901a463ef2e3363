"""The reference code location: its results against an independent computation, its determinism,
its loading, and a range run through `dagster asset materialize` against a running Ray cluster
with the `cluster` resources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from definitions.generator import make_customers, make_orders
from definitions.sources import OrderSource
from tests.conftest import dagster_cli, delta_log_rows, delta_version

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]
ROWS_PER_DAY = 3_000
CUSTOMERS = 400
SEED = 11
REPO = Path(__file__).resolve().parents[1]


def expected_revenue(days: list[str]) -> pd.DataFrame:
    """Revenue per day and region recomputed in pandas from the generator, not from Ray."""
    orders = make_orders(
        {"id": np.arange(len(days) * ROWS_PER_DAY)},
        days=days,
        rows_per_day=ROWS_PER_DAY,
        customers=CUSTOMERS,
        seed=SEED,
    ).to_pandas()
    customers = make_customers({"id": np.arange(CUSTOMERS)}, seed=SEED).to_pandas()
    valid = orders[
        (orders.quantity > 0) & (orders.status != "cancelled") & orders.unit_price.notna()
    ].copy()
    gross = (valid.quantity * valid.unit_price).round(2)
    valid["amount"] = np.where(valid.status == "returned", -gross, gross)
    joined = valid.merge(customers[["customer_id", "region"]], on="customer_id", how="inner")
    return (
        joined.groupby(["order_date", "region"])
        .agg(revenue=("amount", "sum"), orders=("amount", "size"))
        .reset_index()
        .sort_values(["order_date", "region"], ignore_index=True)
    )


@pytest.fixture(scope="module")
def pipeline_root(ray_session: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference pipeline materialized once for three days (one range run) into a fresh root."""
    from definitions.runs import materialize_days
    from resources.local import local_resources

    root = tmp_path_factory.mktemp("reference")
    resources = {
        **local_resources(table_root=str(root)),
        "order_source": OrderSource(rows_per_day=ROWS_PER_DAY, customers=CUSTOMERS, seed=SEED),
    }
    results = materialize_days(resources, DAYS)
    assert [result.success for result in results] == [True, True]
    return root


def test_range_run_writes_every_day_in_one_commit_per_asset(pipeline_root: Path) -> None:
    assert delta_log_rows(pipeline_root / "raw_orders") == dict.fromkeys(DAYS, ROWS_PER_DAY)
    for name in ("raw_orders", "clean_orders", "orders_enriched", "daily_region_revenue"):
        assert delta_version(pipeline_root / name) == 0, name
        assert set(delta_log_rows(pipeline_root / name)) == set(DAYS), name
    assert delta_log_rows(pipeline_root / "customers") == {"": CUSTOMERS}


def test_customers_come_from_the_crm_and_revenue_goes_back_to_it(pipeline_root: Path) -> None:
    """The dimension is read from the CRM database (here the local stand-in, a SQLite file the
    first run filled from the generator), and the revenue export there holds exactly the rows
    of the Delta table, day by day."""
    from ray_assets import DeltaStore, PartitionSlice
    from ray_assets.connectors.sql import SqlDatabase

    crm = SqlDatabase(url=f"sqlite:///{pipeline_root}/crm.db")
    assert crm.fetch("SELECT COUNT(*) AS n FROM crm_customers")["n"][0].as_py() == CUSTOMERS
    exported = crm.fetch(
        "SELECT order_date, region, revenue, orders FROM daily_region_revenue_export"
    ).to_pandas()
    revenue = (
        DeltaStore(str(pipeline_root / "daily_region_revenue"))
        .read(PartitionSlice.unpartitioned("daily_region_revenue"))
        .to_pandas()
    )
    assert len(exported) == len(revenue) > 0
    exported["order_date"] = exported["order_date"].astype(str)
    merged = exported.merge(
        revenue.assign(order_date=revenue["order_date"].astype(str)),
        on=["order_date", "region"],
        suffixes=("_sql", "_delta"),
    )
    assert len(merged) == len(revenue)
    assert (merged["orders_sql"] == merged["orders_delta"]).all()
    assert np.allclose(merged["revenue_sql"], merged["revenue_delta"])


def test_revenue_matches_an_independent_pandas_computation(pipeline_root: Path) -> None:
    from ray_assets import DeltaStore, PartitionSlice

    expected = expected_revenue(DAYS)
    store = DeltaStore(str(pipeline_root / "daily_region_revenue"))
    actual = (
        store.read(PartitionSlice.unpartitioned("daily_region_revenue"))
        .to_pandas()
        .sort_values(["order_date", "region"], ignore_index=True)
    )
    assert list(actual.columns) == ["order_date", "region", "revenue", "orders", "avg_order_value"]
    keys = ["order_date", "region"]
    assert actual[keys].astype(str).values.tolist() == expected[keys].astype(str).values.tolist()
    assert actual.orders.tolist() == expected.orders.tolist()
    np.testing.assert_allclose(actual.revenue, expected.revenue, atol=0.01)
    np.testing.assert_allclose(
        actual.avg_order_value, expected.revenue / expected.orders, atol=0.006
    )
    # the joined table dropped the unknown customers' orders and nothing else
    enriched_rows = sum(delta_log_rows(pipeline_root / "orders_enriched").values())
    assert enriched_rows == int(expected.orders.sum())
    assert enriched_rows < sum(delta_log_rows(pipeline_root / "clean_orders").values())


def test_generated_rows_do_not_depend_on_block_boundaries() -> None:
    kwargs = {"days": DAYS, "rows_per_day": 1_000, "customers": 50, "seed": 3}
    whole = make_orders({"id": np.arange(3_000)}, **kwargs)
    pieces = [
        make_orders({"id": np.arange(a, b)}, **kwargs)
        for a, b in [(0, 7), (7, 1_999), (1_999, 3_000)]
    ]
    import pyarrow as pa

    assert pa.concat_tables(pieces).equals(whole)
    # a day's rows are the same whichever range the day is generated in
    alone = make_orders({"id": np.arange(1_000)}, **{**kwargs, "days": DAYS[1:2]})
    assert alone.equals(whole.slice(1_000, 1_000))
    assert make_orders({"id": np.arange(3_000)}, **{**kwargs, "seed": 4}) != whole


def test_code_location_loads_with_jobs_and_schedules() -> None:
    import definitions

    dg.Definitions.validate_loadable(definitions.defs)
    repository = definitions.defs.get_repository_def()
    assert {job.name for job in repository.get_all_jobs()} >= {
        "daily_orders",
        "refresh_customers",
        "table_maintenance",
    }
    assert {s.name for s in repository.schedule_defs} == {
        "daily_orders_schedule",
        "refresh_customers_schedule",
        "table_maintenance_schedule",
    }


def test_the_daily_schedule_requests_the_latest_finished_day_once() -> None:
    import datetime as dt

    from definitions import defs
    from definitions.automation import daily_orders_schedule

    tick_at = dt.datetime(2024, 5, 3, 2, 0, tzinfo=dt.timezone.utc)
    with dg.build_schedule_context(
        scheduled_execution_time=tick_at, repository_def=defs.get_repository_def()
    ) as context:
        requests = daily_orders_schedule.evaluate_tick(context).run_requests
    assert [(r.partition_key, r.run_key) for r in requests] == [("2024-05-02", "2024-05-02")]


def test_unknown_environment_is_refused() -> None:
    from resources import resources_for

    with pytest.raises(ValueError, match="RAY_ASSETS_ENV='staging'.*local.*cluster"):
        resources_for("staging")


@pytest.mark.slow
def test_cli_materializes_everything_for_a_range_in_one_run_on_a_cluster_with_tables_on_s3(
    ray_session: str, postgres, tmp_path: Path
) -> None:
    """The natural command, `dagster asset materialize --select '*' --partition-range A...B`,
    with the cluster resources and every table on S3 (a local S3-compatible server), set by
    environment variables only: it joins the running Ray (the test session's, whose workers
    have no credentials), reads the customers from the CRM in PostgreSQL, and writes the
    unpartitioned dimension and the range of every daily asset, one commit per asset, the
    revenue export into PostgreSQL. Neither secret appears in the output or the event log."""
    from definitions.crm import Crm
    from ray_assets import DeltaStore, PartitionSlice
    from ray_assets.connectors.sql import SqlDatabase
    from tests.s3_server import REGION, running_server

    crm = SqlDatabase(url=postgres.url)
    Crm(database=crm).seed(OrderSource())  # the CRM's own data; the cluster never seeds it
    home = tmp_path / "dagster_home"
    home.mkdir()
    with running_server() as s3:
        root = s3.uri("reference")
        environment = {
            **os.environ,
            "RAY_ASSETS_ENV": "cluster",
            "RAY_ADDRESS": ray_session,
            "RAY_ASSETS_TABLE_ROOT": root,
            "RAY_ASSETS_MODEL_ROOT": str(tmp_path / "models"),
            "AWS_ENDPOINT_URL": s3.endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "RAY_ASSETS_ROWS_PER_DAY": "500",
            "RAY_ASSETS_CRM_URL": postgres.url,
            "DAGSTER_HOME": str(home),
        }
        done = dagster_cli(
            ["asset", "materialize", "-m", "definitions", "--select", "*"]
            + ["--partition-range", "2024-02-01...2024-02-03"],
            environment,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

        def rows(asset: str) -> dict[str, int]:
            store = DeltaStore(f"{root}/{asset}", storage_options=s3.storage_options)
            assert store.version() == 0, asset  # one commit per asset
            counts: dict[str, int] = {}
            for data_file in store.data_files(PartitionSlice.unpartitioned(asset)):
                day = next(iter(data_file.partition_values.values()), "")
                counts[day or ""] = counts.get(day or "", 0) + (data_file.num_rows or 0)
            return counts

        days = ["2024-02-01", "2024-02-02", "2024-02-03"]
        assert rows("raw_orders") == dict.fromkeys(days, 500)
        for asset in ("clean_orders", "orders_enriched", "daily_region_revenue"):
            assert set(rows(asset)) == set(days)
        assert rows("customers") == {"": OrderSource().customers}
        revenue_rows = sum(rows("daily_region_revenue").values())
    assert f"Ray ({ray_session}) is up" in done.stdout + done.stderr  # joined, did not start one
    exported = crm.fetch(
        "SELECT CAST(order_date AS TEXT) AS day, COUNT(*) AS n FROM daily_region_revenue_export "
        "GROUP BY 1 ORDER BY 1"
    ).to_pylist()
    assert [row["day"] for row in exported] == days
    assert sum(row["n"] for row in exported) == revenue_rows
    from postgres_server import PASSWORD

    for secret in (PASSWORD, s3.secret_key):
        assert secret not in done.stdout + done.stderr
        for stored in home.rglob("*"):  # the run's event log and run storage
            if stored.is_file():
                assert secret.encode() not in stored.read_bytes(), stored


@pytest.mark.slow
def test_cluster_environment_without_address_fails_naming_the_variable(tmp_path: Path) -> None:
    environment = {
        key: value for key, value in os.environ.items() if key not in {"RAY_ADDRESS"}
    } | {
        "RAY_ASSETS_ENV": "cluster",
        "RAY_ASSETS_TABLE_ROOT": str(tmp_path / "tables"),
        "RAY_ASSETS_CRM_URL": f"sqlite:///{tmp_path}/crm.db",
        "DAGSTER_HOME": str(tmp_path),
    }
    done = dagster_cli(
        ["asset", "materialize", "-m", "definitions", "--select", "customers"], environment
    )
    assert done.returncode != 0
    assert "RAY_ADDRESS" in done.stdout + done.stderr
    assert not (tmp_path / "tables").exists()


@pytest.mark.slow
def test_demo_command_materializes_and_prints_the_tables(tmp_path: Path) -> None:
    """The README's first command in its own process: it starts the machine's shared local Ray
    head (here in a temporary head folder, with its own token) and leaves it up for the next
    run; its runs are recorded in a persistent instance (what `dagster dev` then shows)."""
    root = tmp_path / "tables"
    home = tmp_path / "home"
    head = tmp_path / "head"
    environment = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "DAGSTER_HOME": str(home),
        "RAY_ASSETS_HEAD_DIR": str(head),
        "RAY_AUTH_TOKEN_PATH": str(tmp_path / "ray_auth_token"),
    }
    head_command = [sys.executable, "-m", "ray_assets.local_head", "--head-dir", str(head)]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "definitions.demo", "--root", str(root), "--days", "2"]
            + ["--rows-per-day", "500"],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
        status = subprocess.run(head_command + ["status"], env=environment, capture_output=True)
        assert status.returncode == 0, "the shared head stays up for the next run"
    finally:
        subprocess.run(head_command + ["stop"], env=environment, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Ray (shared local head) is up" in done.stdout + done.stderr
    assert f"raw_orders: {root}/raw_orders (Delta version 0, 2 files)" in done.stdout
    assert "  2024-01-01: 500 rows\n  2024-01-02: 500 rows" in done.stdout
    assert f"daily_region_revenue: {root}/daily_region_revenue (Delta version 0" in done.stdout
    assert "daily_region_revenue_export: table daily_region_revenue_export in sqlite" in done.stdout
    assert delta_log_rows(root / "raw_orders") == {"2024-01-01": 500, "2024-01-02": 500}
    assert (home / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_runs()) == 2
        assert instance.get_materialized_partitions(dg.AssetKey("daily_region_revenue")) == {
            "2024-01-01",
            "2024-01-02",
        }


def test_task_modules_import_without_building_the_code_location() -> None:
    """What a Ray worker imports to run the pipeline's functions stays light: no Dagster, no
    assets. Building the location on import cost every new worker about 1.3 s."""
    probe = (
        "import sys\n"
        "import definitions, definitions.generator, definitions.transforms\n"
        "heavy = sorted(m for m in ('dagster', 'definitions.location', 'definitions.assets')"
        " if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
        "print('DEFS', type(definitions.defs).__name__, 'defs' in dir(definitions))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HEAVY []" in done.stdout, done.stdout
    assert "DEFS Definitions True" in done.stdout, done.stdout


def test_workspace_yaml_loads_the_code_location(tmp_path: Path) -> None:
    """What `dagster dev -w workspace.yaml` loads, validated by Dagster's own CLI."""
    done = dagster_cli(
        ["definitions", "validate", "-w", "workspace.yaml"],
        {**os.environ, "DAGSTER_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "definitions" in done.stdout + done.stderr


def test_every_enriched_order_is_scored_once_by_the_trained_model(pipeline_root: Path) -> None:
    """The range run trained the model on the days it wrote and scored them in the pool, in one
    commit: one score per enriched order, in [0, 1], each tagged with the model's version."""
    import json

    from ray_assets import DeltaStore, PartitionSlice

    def read(name: str):
        return DeltaStore(str(pipeline_root / name)).read(PartitionSlice.unpartitioned(name))

    artifact = json.loads((pipeline_root / "models" / "return_risk_model.json").read_text())
    assert Path(artifact["uri"]).name == f"{artifact['version']}.pt"
    assert Path(artifact["uri"]).exists()
    scored = read("orders_scored").to_pandas()
    enriched = read("orders_enriched").select_columns(["order_id"]).to_pandas()
    assert sorted(scored["order_id"]) == sorted(enriched["order_id"])
    assert scored["return_risk"].between(0, 1).all()
    assert set(scored["model_version"]) == {artifact["version"]}
    assert delta_version(pipeline_root / "orders_scored") == 0


def test_gpu_steps_run_in_a_pool_sized_to_the_gpus() -> None:
    from definitions.models import orders_scored
    from ray_assets import gpu_pool, size_gpu_pool

    assert orders_scored.op.pool == gpu_pool() == "ray_gpu"
    instance = dg.DagsterInstance.ephemeral()
    assert size_gpu_pool(instance, 0) == 1  # no GPU: the CPU fallback runs one at a time
    assert size_gpu_pool(instance, 4) == 1  # a limit already set is kept ...
    assert size_gpu_pool(instance, 4, replace=True) == 4  # ... unless told to replace it
    assert instance.event_log_storage.get_concurrency_info("ray_gpu").slot_count == 4


def test_a_day_with_broken_rows_is_refused_by_the_clean_orders_checks(
    ray_session: str, tmp_path: Path
) -> None:
    """The generator's bad-rows day: clean_orders commits nothing, the check names the day."""
    from definitions.assets import ASSETS, clean_orders, raw_orders
    from ray_assets import materialize_partition_range
    from resources.local import local_resources

    resources = {
        **local_resources(table_root=str(tmp_path)),
        "order_source": OrderSource(
            rows_per_day=400, customers=CUSTOMERS, seed=SEED, bad_rows_day=DAYS[1]
        ),
    }
    with dg.instance_for_test() as instance:
        result = materialize_partition_range(
            ASSETS,
            DAYS[0],
            DAYS[-1],
            selection=[raw_orders, clean_orders],
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        assert instance.get_materialized_partitions(dg.AssetKey("clean_orders")) == set()
    verdicts = {
        (e.event_specific_data.check_name, e.event_specific_data.partition): e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert not verdicts[("between_quantity", DAYS[1])].passed
    assert not verdicts[("unique_order_id", DAYS[1])].passed
    assert verdicts[("unique_order_id", DAYS[0])].passed
    assert verdicts[("between_quantity", DAYS[0])].passed
    assert verdicts[("between_quantity", DAYS[2])].passed
    assert "100000" in verdicts[("between_quantity", DAYS[1])].metadata["offending_values"].value
    assert not (tmp_path / "clean_orders" / "_delta_log").exists()
    assert delta_log_rows(tmp_path / "raw_orders") == dict.fromkeys(DAYS, 400)


@pytest.mark.heavy
def test_the_same_definitions_on_a_two_node_cluster_write_the_same_tables(
    pipeline_root: Path, tmp_path: Path
) -> None:
    """`tests/two_node.py` starts a real two-node Ray cluster on this machine (a head and a
    worker node, one CPU each) and materializes the same definitions and days through
    `RayResource(address=...)`; every table equals the one the embedded Ray wrote."""
    import json

    from ray_assets import DeltaStore, PartitionSlice

    root = tmp_path / "two_node"
    spec = {"days": DAYS, "rows_per_day": ROWS_PER_DAY, "customers": CUSTOMERS, "seed": SEED}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "two_node.py"), str(root), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"success": [True, True], "nodes_alive": 2, "cluster_cpus": 2.0}, outcome

    for name in ("customers", "raw_orders", "clean_orders", "orders_enriched"):
        assert delta_version(root / name) == delta_version(pipeline_root / name), name
        tables = [
            DeltaStore(str(where / name)).read(PartitionSlice.unpartitioned(name)).to_pandas()
            for where in (pipeline_root, root)
        ]
        key = [c for c in ("order_id", "customer_id") if c in tables[0].columns][:1]
        embedded, cluster = (t.sort_values(key).reset_index(drop=True) for t in tables)
        pd.testing.assert_frame_equal(embedded, cluster, check_exact=False, rtol=1e-9)
    revenue = [
        DeltaStore(str(where / "daily_region_revenue"))
        .read(PartitionSlice.unpartitioned("daily_region_revenue"))
        .to_pandas()
        .sort_values(["order_date", "region"])
        .reset_index(drop=True)
        for where in (pipeline_root, root)
    ]
    pd.testing.assert_frame_equal(revenue[0], revenue[1], check_exact=False, rtol=1e-9)
