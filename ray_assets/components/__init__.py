"""Dagster Components of ray_assets: Ray assets declared in YAML (`defs.yaml`).

This package is the registry module that the `dagster_dg_cli.registry_modules` entry point
names, so `dg list components` shows its components and `dg scaffold defs
ray_assets.components.RayTableAsset <path>` writes a `defs.yaml` for one. It imports Dagster
and pydantic, not Ray or deltalake: they load when an asset runs.
"""

from ray_assets.components.row_filter import Condition
from ray_assets.components.sources import AssetSource, DeltaSource, ParquetSource, SqlSource
from ray_assets.components.table_asset import DailyPartitions, RayTableAsset

__all__ = [
    "AssetSource",
    "Condition",
    "DailyPartitions",
    "DeltaSource",
    "ParquetSource",
    "RayTableAsset",
    "SqlSource",
]
