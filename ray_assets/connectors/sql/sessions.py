"""One connection to a SQL database, spoken to in its own rules: placeholders, quoting, bulk loads.

PostgreSQL (and Redshift) and SQLite go through ADBC (`adbc-driver-postgresql`,
`adbc-driver-sqlite`): results arrive as Arrow record batches (PostgreSQL's binary COPY format
underneath) and bulk loads go through `adbc_ingest` (COPY FROM STDIN on PostgreSQL), with no
Python object per row. Every other SQLAlchemy URL (`mysql+pymysql://`, `mssql+pyodbc://`,
`sqlite+pysqlite://`, ...) goes through a SQLAlchemy connection: rows fetched in chunks into
Arrow, inserts batched with `executemany`. Values are always bound parameters; names are quoted
by the database's rule (doubled double quotes on PostgreSQL and SQLite, SQLAlchemy's identifier
preparer elsewhere), never spliced raw. A session is one transaction until `commit`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

_FETCH_ROWS = 64 * 1024
_ADBC_KINDS = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "redshift": "postgresql",
    "sqlite": "sqlite",
}


def kind_of(url: str) -> str:
    """`postgresql` or `sqlite` (ADBC), else `sqlalchemy`."""
    return _ADBC_KINDS.get(urlsplit(url).scheme.lower(), "sqlalchemy")


def open_session(url: str) -> Session:
    """A connected session in a fresh transaction."""
    return AdbcSession(url) if kind_of(url) != "sqlalchemy" else SqlAlchemySession(url)


class Session:
    """What the reads and writes need of a database connection."""

    def placeholder(self, number: int) -> str:
        raise NotImplementedError

    def quote(self, name: str) -> str:
        raise NotImplementedError

    def table(self, name: str) -> str:
        """A table name, optionally `schema.table`, quoted part by part."""
        return ".".join(self.quote(part) for part in name.split("."))

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def fetch_batches(self) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def fetch_all(self) -> pa.Table:
        batches = list(self.fetch_batches())
        return pa.Table.from_batches(batches) if batches else pa.table({})

    def append(self, table: str, data: pa.RecordBatchReader) -> int:
        raise NotImplementedError

    def create(self, table: str, schema: pa.Schema) -> None:
        raise NotImplementedError

    def has_table(self, table: str) -> bool:
        """Whether `table` exists, asked of the catalog (a failing probe would abort the
        transaction on PostgreSQL, and with it the locks it holds)."""
        raise NotImplementedError

    def lock_for_replace(self, lock_names: Sequence[str]) -> None:
        """Hold, until this transaction ends, a lock per name (a table's partition) that every
        writer of the same name waits for. Without it, two runs replacing the same partition
        at once both delete the old rows and both load theirs. A no-op where the database
        serializes writers itself (SQLite) or offers no such lock (SQLAlchemy)."""

    def commit(self) -> None:
        raise NotImplementedError

    def rollback(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AdbcSession(Session):
    """PostgreSQL or SQLite through ADBC."""

    def __init__(self, url: str) -> None:
        self.kind = kind_of(url)
        if self.kind == "postgresql":
            import adbc_driver_postgresql.dbapi

            libpq_url = urlunsplit(urlsplit(url)._replace(scheme="postgresql"))
            self._connection = adbc_driver_postgresql.dbapi.connect(libpq_url, autocommit=False)
        else:
            import adbc_driver_sqlite.dbapi

            path = _sqlite_path(url)
            if path != ":memory:":  # SQLite creates a missing file; its folder too, here
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._connection = adbc_driver_sqlite.dbapi.connect(path, autocommit=False)
        self._cursor = self._connection.cursor()

    def placeholder(self, number: int) -> str:
        return f"${number}" if self.kind == "postgresql" else "?"

    def quote(self, name: str) -> str:
        return '"' + _checked_name(name).replace('"', '""') + '"'

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(statement, tuple(params) if params else None)

    def fetch_batches(self) -> Iterator[pa.RecordBatch]:
        reader = self._cursor.fetch_record_batch()
        yield from reader

    def fetch_all(self) -> pa.Table:
        return self._cursor.fetch_arrow_table()

    def append(self, table: str, data: pa.RecordBatchReader) -> int:
        schema_name, _, table_name = table.rpartition(".")
        options = {"db_schema_name": schema_name} if schema_name else {}
        return max(self._cursor.adbc_ingest(table_name, data, mode="append", **options), 0)

    def create(self, table: str, schema: pa.Schema) -> None:
        schema_name, _, table_name = table.rpartition(".")
        options = {"db_schema_name": schema_name} if schema_name else {}
        self._cursor.adbc_ingest(table_name, schema.empty_table(), mode="create", **options)

    def has_table(self, table: str) -> bool:
        if self.kind == "postgresql":
            self.execute("SELECT to_regclass($1) IS NOT NULL AS present", (self.table(table),))
        else:
            schema_name, _, table_name = table.rpartition(".")
            catalog = f"{self.quote(schema_name)}.sqlite_master" if schema_name else "sqlite_master"
            self.execute(
                f"SELECT COUNT(*) > 0 AS present FROM {catalog} WHERE type = 'table' AND name = ?",
                (table_name,),
            )
        return bool(self.fetch_all()["present"][0].as_py())

    def lock_for_replace(self, lock_names: Sequence[str]) -> None:
        if self.kind != "postgresql":
            return  # SQLite: one writer per database file at a time, the others fail busy
        for name in sorted(set(lock_names)):  # one order for every writer: no deadlock
            self.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", (name,))
            self._cursor.fetch_arrow_table()

    def commit(self) -> None:
        self._connection.commit()

    def rollback(self) -> None:
        self._connection.rollback()

    def close(self) -> None:
        try:
            self._cursor.close()
        finally:
            self._connection.close()


class SqlAlchemySession(Session):
    """Any other database, through a SQLAlchemy connection (its driver must be installed)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy

        self._sqlalchemy = sqlalchemy
        self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        self._connection = self._engine.connect()
        self._result: Any = None

    def placeholder(self, number: int) -> str:
        return f":p{number}"

    def quote(self, name: str) -> str:
        return self._engine.dialect.identifier_preparer.quote_identifier(_checked_name(name))

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        binds = {f"p{number}": value for number, value in enumerate(params, start=1)}
        self._result = self._connection.execute(self._sqlalchemy.text(statement), binds)

    def fetch_batches(self) -> Iterator[pa.RecordBatch]:
        names = list(self._result.keys())
        fetched = False
        while rows := self._result.fetchmany(_FETCH_ROWS):
            fetched = True
            yield pa.RecordBatch.from_pylist([dict(zip(names, row, strict=True)) for row in rows])
        if not fetched:  # the columns still count: types unknown, so null
            yield pa.RecordBatch.from_pylist([], schema=pa.schema([(n, pa.null()) for n in names]))

    def append(self, table: str, data: pa.RecordBatchReader) -> int:
        names = data.schema.names
        statement = self._sqlalchemy.text(
            f"INSERT INTO {self.table(table)} ({', '.join(self.quote(n) for n in names)}) "
            f"VALUES ({', '.join(f':c{i}' for i in range(len(names)))})"
        )
        rows = 0
        for batch in data:
            values = [
                {f"c{i}": value for i, value in enumerate(row.values())}
                for row in batch.to_pylist()
            ]
            if values:
                self._connection.execute(statement, values)
            rows += batch.num_rows
        return rows

    def create(self, table: str, schema: pa.Schema) -> None:
        sqlalchemy = self._sqlalchemy
        schema_name, _, table_name = table.rpartition(".")
        metadata = sqlalchemy.MetaData()
        sqlalchemy.Table(
            table_name,
            metadata,
            *[sqlalchemy.Column(field.name, _column_type(field.type)) for field in schema],
            schema=schema_name or None,
        )
        metadata.create_all(self._connection)

    def has_table(self, table: str) -> bool:
        schema_name, _, table_name = table.rpartition(".")
        inspector = self._sqlalchemy.inspect(self._connection)
        return inspector.has_table(table_name, schema=schema_name or None)

    def commit(self) -> None:
        self._connection.commit()

    def rollback(self) -> None:
        self._connection.rollback()

    def close(self) -> None:
        self._connection.close()
        self._engine.dispose()


def _checked_name(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"not a valid SQL name: {name!r}")
    return name


def _sqlite_path(url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////absolute.db`, or `sqlite://` (in memory)."""
    path = url.split("://", 1)[1]
    path = path[1:] if path.startswith("/") else path
    return path or ":memory:"


def _column_type(kind: pa.DataType) -> Any:
    import sqlalchemy

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_boolean(kind):
        return sqlalchemy.Boolean()
    if pa.types.is_integer(kind):
        return sqlalchemy.BigInteger()
    if pa.types.is_floating(kind):
        return sqlalchemy.Float()
    if pa.types.is_decimal(kind):
        return sqlalchemy.Numeric(kind.precision, kind.scale)
    if pa.types.is_date(kind):
        return sqlalchemy.Date()
    if pa.types.is_timestamp(kind):
        return sqlalchemy.DateTime(timezone=kind.tz is not None)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return sqlalchemy.Text()
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return sqlalchemy.LargeBinary()
    raise TypeError(f"no SQL column type for Arrow type {kind}")
