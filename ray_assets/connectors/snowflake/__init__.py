"""Snowflake: `SnowflakeDatabase` reads a table or query as a lazy Ray Dataset, fetched in
parallel from Snowflake's own Arrow result batches, and replaces a run's partitions with one
staged `COPY INTO` inside the transaction that deleted them. Needs the `snowflake` extra."""

from typing import TYPE_CHECKING

from ray_assets._lazy import lazy_exports

if TYPE_CHECKING:
    from ray_assets.connectors.snowflake.resource import SnowflakeDatabase

_EXPORTS = {"SnowflakeDatabase": "ray_assets.connectors.snowflake.resource"}
"""Loaded on first use: Ray workers import `ray_assets.connectors.snowflake.reads` to fetch
result batches, and should not import Dagster for it."""

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["SnowflakeDatabase"]
