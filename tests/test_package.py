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
    for name in ("ray_asset", "RayResource", "DeltaIOManager", "DeltaStore", "PartitionSlice"):
        assert name in ray_assets.__all__ and hasattr(ray_assets, name)


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
