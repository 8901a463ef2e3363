"""The package's promises about itself: a light import and an explicit public API."""

import subprocess
import sys

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
