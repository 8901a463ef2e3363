"""Errors that say what failed, where (asset, partitions, table) and why.

Every error raised by ray_assets derives from `RayAssetsError`, so a caller can tell our
verdicts (bad key, stray rows, schema drift) from the failures of the libraries below us.
"""

from __future__ import annotations


class RayAssetsError(Exception):
    """Base class of every error ray_assets raises on purpose."""


class PartitionKeyError(RayAssetsError, ValueError):
    """A partition key is not a member of the asset's partitions definition."""


class PartitionColumnError(RayAssetsError, ValueError):
    """The partition column configuration does not fit the partitions definition or the table."""


class StrayPartitionValuesError(RayAssetsError):
    """Rows carry partition values outside the run's slice; committing them would touch neighbours."""


class SchemaMismatchError(RayAssetsError):
    """The data's schema differs from the table's schema."""


class UnstorableValueError(RayAssetsError, ValueError):
    """Values of a column cannot be stored exactly in the column's Delta type."""


class ConcurrentWriteError(RayAssetsError):
    """Another write committed the same partitions while this write ran, and the store was asked
    to fail rather than replace them."""


class PipelineFailedError(RayAssetsError):
    """The Ray pipeline of a materialization failed before anything was committed."""


class CommitError(RayAssetsError):
    """The Delta commit could not be made; the table is still at its previous version."""


class UnsupportedTableError(RayAssetsError):
    """The Delta table uses a feature this reader does not handle (deletion vectors, column mapping)."""


class SqlDatabaseError(RayAssetsError):
    """A SQL database refused a read or a write (unreachable, credentials, a missing table, a
    type it cannot hold). The message names the database with its password redacted; for a
    write, the transaction was rolled back and the table is as it was."""


class WarehouseError(RayAssetsError):
    """Snowflake or BigQuery refused a read or a write (unreachable, credentials, a missing
    table, a type it cannot hold). The message names the resource without its secrets; for a
    write, nothing was committed and the table is as it was."""


class ActorPoolError(RayAssetsError):
    """An `ActorPool` cannot run as configured on the connected cluster (no GPU and no CPU
    fallback, more CPUs per actor than the cluster can spare)."""


class CheckFailedError(RayAssetsError):
    """A blocking check of the asset failed before the commit: nothing was committed, and the
    message names each failed check, partition, count of offending rows and up to five values.
    `results` holds every check's verdict per partition (`ray_assets.checks.gate.CheckResults`)."""

    def __init__(self, message: str, *, results: object = None) -> None:
        super().__init__(message)
        self.results = results


class ObjectStoreError(RayAssetsError):
    """The object store holding a table failed (no such bucket, access refused, an unreachable
    endpoint). The message names the table, never a secret; nothing was read or written."""
