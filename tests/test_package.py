"""The package's promises about itself: a light import and an explicit public API."""

import subprocess
import sys

import pytest

import ray_assets


def test_import_does_not_load_ray_or_deltalake() -> None:
    code = (
        "import sys, ray_assets; print(sorted(m for m in ('ray', 'deltalake') if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "[]"


def test_public_names_are_exported() -> None:
    for name in ray_assets.__all__:
        assert hasattr(ray_assets, name), name
    assert set(ray_assets.__all__) <= set(dir(ray_assets))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        ray_assets.nothing  # noqa: B018


def test_what_ray_workers_unpickle_does_not_import_dagster() -> None:
    """Readers, the sink and the aggregation's functions run in Ray workers, which import their
    modules by name: with Dagster among those imports, each worker of each run would spend
    about a second importing it before its first task."""
    modules = [
        "ray_assets.aggregates",
        "ray_assets.joins",
        "ray_assets.storage.files_source",
        "ray_assets.storage.parquet_source",
        "ray_assets.storage.files_sink",
        "ray_assets.worker_warmup",
        "ray_assets.lookups",
        "ray_assets.cluster",
        "ray_assets.connectors.sql.reads",
        "ray_assets.models",
        "ray_assets.pool_actors",
        "ray_assets.connectors.read_tasks",
        "ray_assets.connectors.snowflake.reads",
        "ray_assets.connectors.bigquery.reads",
        "ray_assets.checks.rules",
        "ray_assets.checks.gate",
        "ray_assets.storage.schema_evolution",
        "ray_assets.storage.staged",
    ]
    code = f"import sys; import {', '.join(modules)}; print('dagster' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "False"


@pytest.mark.parametrize(
    "module",
    ["resources.local", "resources.cluster", "resources", "definitions", "definitions.runs"],
)
def test_project_modules_import_first_in_a_fresh_process(module: str) -> None:
    """No import cycle between the code location and its resources, whichever loads first."""
    completed = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_the_reference_location_and_tests_use_no_private_module() -> None:
    from pathlib import Path

    root = Path(__file__).parent.parent
    users = [*root.glob("definitions/*.py"), *root.glob("resources/*.py"), *root.glob("tests/*.py")]
    offenders = [
        p.name for p in users if "ray_assets._" in p.read_text() and p.name != Path(__file__).name
    ]
    assert offenders == []
