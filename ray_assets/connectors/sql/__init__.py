"""SQL databases: PostgreSQL (and Redshift), SQLite and any SQLAlchemy URL.

`SqlDatabase` is the resource: `read` gives a lazy Ray Dataset of a table or query, limited to a
run's `PartitionSlice` and split into parallel shards; `write` replaces exactly a slice's rows in
one transaction. `SqlIOManager` stores assets as tables. PostgreSQL and SQLite go through ADBC
(Arrow in, Arrow out, COPY for bulk loads); other databases through SQLAlchemy. Drivers load
when used.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray_assets.connectors.sql.io_manager import SqlIOManager
    from ray_assets.connectors.sql.resource import SqlDatabase

_EXPORTS = {
    "SqlDatabase": "ray_assets.connectors.sql.resource",
    "SqlIOManager": "ray_assets.connectors.sql.io_manager",
}
"""Loaded on first use (PEP 562): Ray workers import `ray_assets.connectors.sql.reads` to run
a read task, and an eager package would make each of them import Dagster first."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ray_assets.connectors.sql' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = ["SqlDatabase", "SqlIOManager"]
