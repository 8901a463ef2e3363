"""`SnowflakeDatabase`: a Dagster resource for Snowflake, read and written as Ray Datasets.

Why not `ray.data.read_snowflake` / `Dataset.write_snowflake`: the reader fetches the whole
result in one task through `fetch_arrow_batches`, the writer goes through `write_pandas` per
block, each block its own commit, so a failed job leaves part of its rows and a retry doubles
them; neither knows a partition. Here a read fetches Snowflake's Arrow result chunks in parallel
tasks that need no connection, and a write replaces exactly the run's partitions in one
transaction (see `writes.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa
from pydantic import Field

from ray_assets.cluster import parallel_tasks
from ray_assets.connectors.slices import arrow_stream, typed_keys
from ray_assets.errors import RayAssetsError, WarehouseError

if TYPE_CHECKING:
    import ray.data

    from ray_assets.partition_slice import PartitionSlice


class SnowflakeDatabase(dg.ConfigurableResource):
    """A Snowflake database (and default schema) reached as `user` with a password or a key.

    Give `password` / `private_key` as `dg.EnvVar`: Dagster then keeps them out of the run's
    config; they are never logged, never in metadata or errors, and never reach a Ray task (read
    tasks download result chunks without a connection). Values in queries are bound on the
    server (`qmark`), never spliced into the SQL text.
    """

    account: str = Field(description="The account identifier, e.g. `myorg-myaccount`.")
    user: str = Field(description="The login name.")
    password: str | None = Field(default=None, description="Use dg.EnvVar.")
    private_key: str | None = Field(
        default=None, description="A PEM private key for key-pair authentication; use dg.EnvVar."
    )
    private_key_passphrase: str | None = Field(default=None, description="Use dg.EnvVar.")
    database: str = Field(description="The database tables are read from and written to.")
    db_schema: str = Field(default="PUBLIC", description="The default schema of table names.")
    warehouse: str | None = Field(default=None, description="The virtual warehouse to run on.")
    role: str | None = Field(default=None, description="The role to assume.")
    host: str | None = Field(
        default=None, description="A host other than the account's (private link, an emulator)."
    )
    port: int | None = Field(default=None, description="With `host`.")
    protocol: str = Field(default="https", description="With `host`.")
    login_timeout: int = Field(default=60, description="Seconds to wait for a login.")
    read_tasks: int | None = Field(
        default=None,
        description="Read tasks a read's result chunks are spread over when `read` does not "
        "say; None: one per CPU of the Ray cluster.",
    )
    rows_per_file: int = Field(
        default=1_000_000, description="Rows per Parquet file staged by a write."
    )

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
        tasks: int | None = None,
    ) -> ray.data.Dataset:
        """A lazy dataset of `table` (`schema.table`, `db.schema.table`) or of `query` (with
        `?` placeholders for `query_params`), limited to `where` (column -> value or list of
        values) and to the partitions of `partition`. The query runs once, on the driver;
        its result chunks are fetched by up to `tasks` parallel read tasks."""
        from ray_assets.connectors.slices import Statement, slice_condition
        from ray_assets.connectors.snowflake.names import qualified, quote
        from ray_assets.connectors.snowflake.reads import (
            conformed,
            planned_schema,
            result_batches_dataset,
        )
        from ray_assets.connectors.snowflake.writes import QmarkDialect

        if (table is None) == (query is None):
            raise ValueError("give a table or a query, not both and not neither")
        what = self._describe(f"table {table}" if table else "query", partition)
        statement = Statement(QmarkDialect(), params=list(query_params))
        origin = qualified(table) if table else f"({query})"
        projection = ", ".join(quote(c) for c in columns) if columns else "*"
        conditions = [
            statement.one_of(column, _as_list(value)) for column, value in (where or {}).items()
        ]
        with self._connection(what) as connection:
            cursor = connection.cursor()
            try:
                if partition is not None and partition.is_partitioned:
                    cursor.execute(f"SELECT * FROM {origin} AS src LIMIT 0", statement.params)
                    empty = cursor.fetch_arrow_all(force_return_table=True)
                    conditions.append(
                        slice_condition(statement, typed_keys(partition, empty.schema))
                    )
                text = f"SELECT {projection} FROM {origin} AS src"
                if conditions:
                    text += " WHERE " + " AND ".join(f"({c})" for c in conditions)
                cursor.execute(text, statement.params)
                batches = cursor.get_result_batches() or []
                first = batches[0].to_arrow() if batches else cursor.fetch_arrow_all(True)
            except RayAssetsError:
                raise
            except Exception as error:
                raise self._error(what, error) from None
        schema = planned_schema(conformed(first, first.schema))
        name = f"ReadSnowflake({table or 'query'})"
        wanted = tasks or self.read_tasks or parallel_tasks()
        return result_batches_dataset(batches, wanted, schema, name)

    def has_table(self, table: str) -> bool:
        """Whether `table` exists, asked of the database's information schema."""
        from ray_assets.connectors.snowflake.writes import has_table

        what = self._describe(f"table {table}", None)
        with self._connection(what) as connection:
            try:
                return has_table(connection.cursor(), table)
            except Exception as error:
                raise self._error(what, error) from None

    def fetch(self, query: str, params: Sequence[Any] = ()) -> pa.Table:
        """The whole result of a small query, on the driver (checks, counts, lookups)."""
        what = self._describe("query", None)
        with self._connection(what) as connection:
            try:
                cursor = connection.cursor()
                cursor.execute(query, list(params))
                return cursor.fetch_arrow_all(force_return_table=True)
            except Exception as error:
                raise self._error(what, error) from None

    # ------------------------------------------------------------------ writes
    def write(
        self,
        data: ray.data.Dataset | pa.Table,
        table: str,
        *,
        partition: PartitionSlice | None = None,
    ) -> int:
        """Replace the rows of `partition` (every row when None) in `table` with `data`, in one
        transaction; create `table` from the data's schema if it is missing. The rows written.
        On any failure nothing is committed: the table is as it was."""
        from ray_assets.connectors.snowflake.writes import replace_slice

        what = self._describe(f"table {table}", partition)
        with self._connection(what) as connection:
            try:
                batches, schema = arrow_stream(data)
                keys = typed_keys(partition, schema)
                return replace_slice(
                    connection,
                    table,
                    schema,
                    batches,
                    slice_keys=keys,
                    what=what,
                    rows_per_file=self.rows_per_file,
                )
            except RayAssetsError:
                raise
            except Exception as error:
                raise self._error(what, error, written=False) from None

    # ------------------------------------------------------------------ helpers
    def _connection(self, what: str) -> Any:
        """A new connection with server-side binding; closed by `with`."""
        import snowflake.connector

        options: dict[str, Any] = {
            "account": self.account,
            "user": self.user,
            "database": self.database,
            "schema": self.db_schema,
            "paramstyle": "qmark",
            "login_timeout": self.login_timeout,
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
            "application": "ray_assets",
        }
        optional = {"warehouse": self.warehouse, "role": self.role, "password": self.password}
        options.update({key: value for key, value in optional.items() if value is not None})
        if self.host is not None:
            options.update(host=self.host, protocol=self.protocol)
            if self.port is not None:
                options["port"] = self.port
        try:
            if self.private_key is not None:
                options["private_key"] = _der_key(self.private_key, self.private_key_passphrase)
            return snowflake.connector.connect(**options)
        except Exception as error:
            raise self._error(what, error, connecting=True) from None

    def _secrets(self) -> list[str]:
        values = [self.password, self.private_key, self.private_key_passphrase]
        return [value for value in values if value]

    def _describe(self, target: str, partition: PartitionSlice | None) -> str:
        where = f" for {partition.describe()}" if partition is not None else ""
        return f"SnowflakeDatabase({self.account}/{self.database}.{self.db_schema}) {target}{where}"

    def _error(
        self,
        what: str,
        error: BaseException,
        *,
        connecting: bool = False,
        written: bool | None = None,
    ) -> WarehouseError:
        from ray_assets.storage.ray_errors import describe_cause

        cause = describe_cause(error).strip()
        for secret in self._secrets():
            cause = cause.replace(secret, "***")
        head = f"{what}: cannot connect as {self.user}" if connecting else what
        tail = "; nothing was written, the table is as it was" if written is False else ""
        return WarehouseError(f"{head}: {cause}{tail}")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]


def _der_key(pem: str, passphrase: str | None) -> bytes:
    """The PEM key as the DER (PKCS#8) bytes the connector takes."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(
        pem.encode(), password=passphrase.encode() if passphrase else None
    )
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
