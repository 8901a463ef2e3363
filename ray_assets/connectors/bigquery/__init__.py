"""BigQuery: `BigQueryProject` reads a table or query as a lazy Ray Dataset through the Storage
Read API, one read task per stream, and replaces a run's partitions with one load job per
partition decorator (`WRITE_TRUNCATE` of `table$20240102`, never of the table). Needs the
`bigquery` extra."""

from typing import TYPE_CHECKING

from ray_assets._lazy import lazy_exports

if TYPE_CHECKING:
    from ray_assets.connectors.bigquery.resource import BigQueryProject

_EXPORTS = {"BigQueryProject": "ray_assets.connectors.bigquery.resource"}
"""Loaded on first use: Ray workers import `ray_assets.connectors.bigquery.reads` to read a
stream, and should not import Dagster for it."""

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["BigQueryProject"]
