"""`SqlDatabase`: a Dagster resource for a SQL database, read and written as Ray Datasets.

Why not `ray.data.read_sql` / `Dataset.write_sql`: without `shard_keys` the former reads in one
task through `fetchall()`, with them every shard re-runs the whole query under an MD5 filter
(200 shards by default); the latter inserts row by row, one transaction per task, so a failed
job leaves part of its rows and a retry doubles them. Here a read is one bounded query per shard
(a range of a numeric or date column, or a hash on PostgreSQL), Arrow end to end; a write is one
transaction that deletes exactly the run's partitions and bulk-loads the new rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
import pyarrow as pa
from pydantic import Field

from ray_assets.cluster import parallel_tasks
from ray_assets.connectors.slices import arrow_stream, typed_keys
from ray_assets.connectors.sql.urls import redact, scrub
from ray_assets.errors import RayAssetsError, SqlDatabaseError

if TYPE_CHECKING:
    import ray.data

    from ray_assets.partition_slice import PartitionSlice

ShardBy = Literal["range", "hash"]
_PROBE_ROWS = 1_000


class SqlDatabase(dg.ConfigurableResource):
    """A SQL database: PostgreSQL or Redshift (`postgresql://`), SQLite (`sqlite:///file.db`) or
    any SQLAlchemy URL whose driver is installed.

    Give the URL as `dg.EnvVar("WAREHOUSE_URL")`: it holds the password, and Dagster then keeps
    it out of the run's config. It is never logged, never put in metadata or errors (redacted:
    `postgresql://user:***@host/db`), and reaches Ray tasks through the object store only.
    """

    url: str = Field(
        description="postgresql://user:password@host:port/db, sqlite:///path.db, or any "
        "SQLAlchemy URL. Use dg.EnvVar: it holds the password."
    )
    shards: int | None = Field(
        default=None,
        description="Read tasks of a sharded read when `read` does not say; None: one per CPU "
        "of the Ray cluster.",
    )
    min_rows_per_shard: int = Field(
        default=50_000,
        description="A sharded read uses fewer shards than asked when each would get fewer "
        "rows: a query per shard costs a connection and a plan.",
    )

    @property
    def redacted_url(self) -> str:
        """The URL as it may appear anywhere: the password as `***`."""
        return redact(self.url)

    # ------------------------------------------------------------------ reads
    def read(
        self,
        table: str | None = None,
        *,
        query: str | None = None,
        query_params: Sequence[Any] = (),
        columns: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        partition: PartitionSlice | None = None,
        shard_column: str | None = None,
        shards: int | None = None,
        shard_by: ShardBy = "range",
    ) -> ray.data.Dataset:
        """A lazy dataset of `table` (or of `query`), limited to `where` (column -> value or
        list of values) and to the partitions of `partition`, split by `shard_column` into
        `shards` parallel read tasks (ranges of a numeric/date/timestamp column, or
        `shard_by="hash"` on PostgreSQL for any column). Without `shard_column`, one task.

        A `query` uses the database's placeholders for `query_params` ($1 on PostgreSQL, ? on
        SQLite, :p1 through SQLAlchemy); it runs as a subquery, so each shard re-runs it with
        its own bounds: give it a column to shard on that the database can filter early.
        """
        import ray

        from ray_assets.connectors.sql.reads import ShardQuery, shards_dataset
        from ray_assets.connectors.sql.statements import Source, select

        source = Source(table=table, query=query, query_params=tuple(query_params))
        what = self._describe(source.describe(), partition)
        with self._session(what) as session:
            every_column = self._probe_schema(session, source, what)
            unknown = [name for name in (columns or []) if name not in every_column.names]
            if unknown:
                raise SqlDatabaseError(f"{what}: no column {unknown}; it has {every_column.names}")
            schema = (
                pa.schema([every_column.field(name) for name in columns])
                if columns
                else every_column
            )
            keys = typed_keys(partition, every_column)
            shard_count = 1
            bounds: list[tuple[Any, Any]] = []
            if shard_column is not None:
                if shard_column not in every_column.names:
                    raise SqlDatabaseError(
                        f"{what}: no column {shard_column!r} to shard on; it has "
                        f"{every_column.names}"
                    )
                wanted = shards or self.shards or parallel_tasks()
                if shard_by == "range":
                    try:
                        bounds = self._range_bounds(
                            session, source, where, keys, shard_column, wanted
                        )
                    except Exception as error:
                        raise self._error(what, error) from None
                    shard_count = max(1, len(bounds))
                elif _is_postgres(self.url):
                    shard_count = wanted
                else:
                    raise SqlDatabaseError(
                        f"{what}: shard_by='hash' needs PostgreSQL; shard by a range instead"
                    )
            statements = []
            for index in range(shard_count):
                statement = select(
                    session,
                    source,
                    columns=columns,
                    where=where,
                    slice_values=keys,
                    shard=lambda s, i=index: _shard_condition(
                        s, shard_column, shard_by, i, shard_count, bounds
                    ),
                )
                statements.append(ShardQuery(statement.text, tuple(statement.params)))
        name = f"ReadSql({table or 'query'})"
        return shards_dataset(ray.put(self.url), statements, schema, name, what)

    def has_table(self, table: str) -> bool:
        """Whether `table` (`schema.table` allowed) exists, asked of the database's catalog."""
        with self._session(f"table {table}") as session:
            try:
                return session.has_table(table)
            except Exception as error:
                raise self._error(self._describe(f"table {table}", None), error) from None

    def fetch(self, query: str, params: Sequence[Any] = ()) -> pa.Table:
        """The whole result of a small query, on the driver (checks, counts, lookups)."""
        with self._session("query") as session:
            try:
                session.execute(query, params)
                return session.fetch_all()
            except Exception as error:
                raise self._error("query", error) from None

    # ------------------------------------------------------------------ writes
    def write(
        self,
        data: ray.data.Dataset | pa.Table,
        table: str,
        *,
        partition: PartitionSlice | None = None,
    ) -> int:
        """Replace the rows of `partition` (every row when None) in `table` with `data`, in one
        transaction; create `table` from the data's schema if it is missing. Returns the rows
        written. On any failure the transaction is rolled back: the table is as it was."""
        from ray_assets.connectors.sql.writes import replace_slice

        what = self._describe(f"table {table}", partition)
        with self._session(what) as session:  # an unreachable database fails before the pipeline
            try:
                batches, schema = arrow_stream(data)
                keys = typed_keys(partition, schema)
                return replace_slice(session, table, schema, batches, slice_keys=keys, what=what)
            except RayAssetsError:
                raise
            except Exception as error:
                raise self._error(what, error, written=False) from None

    # ------------------------------------------------------------------ helpers
    def _session(self, what: str) -> Any:
        from ray_assets.connectors.sql.sessions import open_session

        try:
            return open_session(self.url)
        except Exception as error:
            raise self._error(what, error, connecting=True) from None

    def _probe_schema(self, session: Any, source: Any, what: str) -> pa.Schema:
        """Every column of the source, typed. A few rows, not none: SQLite's types are per
        value, and its driver infers a column's type from the rows it sees."""
        from ray_assets.connectors.sql.statements import select

        statement = select(session, source, limit=_PROBE_ROWS)
        try:
            session.execute(statement.text, statement.params)
            return session.fetch_all().schema.remove_metadata()
        except Exception as error:
            raise self._error(what, error) from None

    def _range_bounds(
        self,
        session: Any,
        source: Any,
        where: Mapping[str, Any] | None,
        keys: Sequence[Mapping[str, Any]] | None,
        column: str,
        wanted: int,
    ) -> list[tuple[Any, Any]]:
        from ray_assets.connectors.sql.statements import select, shard_bounds

        quoted = session.quote(column)
        statement = select(
            session,
            source,
            where=where,
            slice_values=keys,
            select_list=f"MIN({quoted}), MAX({quoted}), COUNT(*)",
        )
        session.execute(statement.text, statement.params)
        low, high, rows = session.fetch_all().to_pylist()[0].values()
        by_rows = max(1, (rows or 0) // max(1, self.min_rows_per_shard))
        return shard_bounds(low, high, max(1, min(wanted, by_rows))) or [(None, None)]

    def _describe(self, target: str, partition: PartitionSlice | None) -> str:
        """What an error names: the database (password hidden), the table or query, the run's
        partitions."""
        where = f" for {partition.describe()}" if partition is not None else ""
        return f"SqlDatabase({self.redacted_url}) {target}{where}"

    def _error(
        self,
        what: str,
        error: BaseException,
        *,
        connecting: bool = False,
        written: bool | None = None,
    ) -> SqlDatabaseError:
        from ray_assets.storage.ray_errors import describe_cause

        cause = scrub(describe_cause(error), self.url).strip()  # a Ray task's root cause too
        if connecting:
            head = f"SqlDatabase({self.redacted_url}): cannot connect"
        else:
            head = what
        tail = "; nothing was written, the table is as it was" if written is False else ""
        return SqlDatabaseError(f"{head}: {cause}{tail}")


def _is_postgres(url: str) -> bool:
    from ray_assets.connectors.sql.sessions import kind_of

    return kind_of(url) == "postgresql"


def _shard_condition(
    statement: Any,
    column: str | None,
    shard_by: ShardBy,
    index: int,
    count: int,
    bounds: list[tuple[Any, Any]],
) -> str:
    if column is None or count <= 1 and not bounds:
        return ""
    quoted = statement.session.quote(column)
    if shard_by == "hash":
        return (
            f"MOD(ABS(HASHTEXT(CAST({quoted} AS TEXT))::BIGINT), {statement.param(count)}) "
            f"= {statement.param(index)}" + (f" OR {quoted} IS NULL" if index == 0 else "")
        )
    low, high = bounds[index]
    if low is None:  # no non-null value: the one shard reads everything
        return ""
    upper = "<=" if index == len(bounds) - 1 else "<"
    condition = f"{quoted} >= {statement.param(low)} AND {quoted} {upper} {statement.param(high)}"
    return f"({condition}) OR {quoted} IS NULL" if index == 0 else condition
