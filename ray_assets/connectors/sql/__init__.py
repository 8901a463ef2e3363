"""SQL databases: PostgreSQL (and Redshift), SQLite and any SQLAlchemy URL.

`SqlDatabase` is the resource: `read` gives a lazy Ray Dataset of a table or query, limited to a
run's `PartitionSlice` and split into parallel shards; `write` replaces exactly a slice's rows in
one transaction. `SqlIOManager` stores assets as tables. PostgreSQL and SQLite go through ADBC
(Arrow in, Arrow out, COPY for bulk loads); other databases through SQLAlchemy. Drivers load
when used.
"""

from typing import TYPE_CHECKING

from ray_assets._lazy import lazy_exports

if TYPE_CHECKING:
    from ray_assets.connectors.sql.io_manager import SqlIOManager
    from ray_assets.connectors.sql.resource import SqlDatabase

_EXPORTS = {
    "SqlDatabase": "ray_assets.connectors.sql.resource",
    "SqlIOManager": "ray_assets.connectors.sql.io_manager",
}
"""Loaded on first use (PEP 562): Ray workers import `ray_assets.connectors.sql.reads` to run
a read task, and an eager package would make each of them import Dagster first."""


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = ["SqlDatabase", "SqlIOManager"]
