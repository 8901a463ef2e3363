"""SQL databases: PostgreSQL (and Redshift), SQLite and any SQLAlchemy URL.

`SqlDatabase` is the resource: `read` gives a lazy Ray Dataset of a table or query, limited to a
run's `PartitionSlice` and split into parallel shards; `write` replaces exactly a slice's rows in
one transaction. PostgreSQL and SQLite go through ADBC (Arrow in, Arrow out, COPY for bulk
loads); other databases through SQLAlchemy's DB-API connection. Drivers load when used.
"""

from ray_assets.connectors.sql.io_manager import SqlIOManager
from ray_assets.connectors.sql.resource import SqlDatabase

__all__ = ["SqlDatabase", "SqlIOManager"]
