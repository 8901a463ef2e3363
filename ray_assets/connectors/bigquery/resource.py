"""`BigQueryProject`: a Dagster resource for BigQuery, read and written as Ray Datasets.

Why not `ray.data.read_bigquery` / `Dataset.write_bigquery`: the reader takes neither columns
nor a row filter (a partition is read by a query into a temporary table, billed, or not at all)
and finds credentials only on each worker's machine; the writer deletes the table before it
writes unless told otherwise, and appends block by block. Here a read is one Storage Read API
session with the columns and the partition filter applied by BigQuery, one task per stream;
a write replaces each partition with one atomic load job to its decorator (see `writes.py`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
import pyarrow as pa
from pydantic import Field

from ray_assets.cluster import parallel_tasks
from ray_assets.connectors.slices import arrow_stream, typed_keys
from ray_assets.errors import RayAssetsError, WarehouseError

if TYPE_CHECKING:
    import ray.data

    from ray_assets.partition_slice import PartitionSlice

_ARROW_TYPES = {
    "STRING": pa.string(),
    "BYTES": pa.binary(),
    "INTEGER": pa.int64(),
    "INT64": pa.int64(),
    "FLOAT": pa.float64(),
    "FLOAT64": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "BOOL": pa.bool_(),
    "DATE": pa.date32(),
    "DATETIME": pa.timestamp("us"),
    "TIMESTAMP": pa.timestamp("us", "UTC"),
    "NUMERIC": pa.decimal128(38, 9),
}
"""What a partition key is typed as, per BigQuery column type."""


class BigQueryProject(dg.ConfigurableResource):
    """A BigQuery project and its default dataset.

    Credentials: `credentials_json` (a service account key's JSON, through `dg.EnvVar`), else
    the machine's default credentials (`gcloud auth application-default login`, a workload
    identity). The key never appears in logs, metadata or errors, and reaches Ray read tasks
    through the object store only.
    """

    project: str = Field(description="The project that holds the tables and pays the jobs.")
    dataset: str = Field(description="The default dataset of table names.")
    location: str | None = Field(default=None, description="Where jobs run (e.g. `EU`).")
    credentials_json: str | None = Field(
        default=None, description="A service account key as JSON; use dg.EnvVar."
    )
    anonymous: bool = Field(
        default=False, description="No credentials at all: for an emulator on loopback."
    )
    api_endpoint: str | None = Field(
        default=None, description="Another REST endpoint (`http://127.0.0.1:9050`)."
    )
    read_endpoint: str | None = Field(
        default=None, description="Another Storage Read API endpoint (`host:port`)."
    )
    read_insecure: bool = Field(
        default=False, description="Plain-text gRPC to `read_endpoint` (an emulator)."
    )
    read_streams: int | None = Field(
        default=None,
        description="Streams a read asks for when `read` does not say; None: one per CPU of "
        "the Ray cluster. BigQuery may give fewer.",
    )
    retry_timeout_s: float = Field(
        default=120,
        description="How long a request keeps retrying before it fails: an unreachable "
        "endpoint or a refused token fails after this, not after the clients' 10 minutes.",
    )
    time_partitioning: Literal["HOUR", "DAY", "MONTH", "YEAR"] = Field(
        default="DAY", description="The granularity of the tables' time partitions."
    )

    # ------------------------------------------------------------------ reads
    def read(
        self,
        table: str | None = None,
        *,
        query: str | None = None,
        query_params: Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        partition: PartitionSlice | None = None,
        streams: int | None = None,
    ) -> ray.data.Dataset:
        """A lazy dataset of `table` (`dataset.table`, `project.dataset.table`) or of `query`
        (`@name` parameters from `query_params`; it runs once, into a temporary table), limited
        to `where` (column -> value or list of values) and to the partitions of `partition`,
        read by up to `streams` parallel tasks."""
        import ray

        from ray_assets.connectors.bigquery.reads import streams_dataset
        from ray_assets.connectors.bigquery.restrictions import row_restriction

        if (table is None) == (query is None):
            raise ValueError("give a table or a query, not both and not neither")
        what = self._describe(f"table {table}" if table else "query", partition)
        try:
            client = self._client()
            if query is not None:
                table = self._run_query(client, query, query_params or {})
            table_id = self._table_id(table)
            bq_table = client.get_table(table_id, retry=self._retry())
            known = {f.name: _ARROW_TYPES.get(f.field_type, pa.string()) for f in bq_table.schema}
            keys = typed_keys(partition, pa.schema(list(known.items())))
            unknown = [c for c in columns or [] if c not in known]
            if unknown:
                raise WarehouseError(f"{what}: no column {unknown}; it has {list(known)}")
            session = self._read_session(
                table_id,
                list(columns or []),
                row_restriction(where, keys),
                streams or self.read_streams or parallel_tasks(),
            )
        except RayAssetsError:
            raise
        except Exception as error:
            raise self._error(what, error) from None
        schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
        key = ray.put(self._credentials_info()) if self.credentials_json else None
        spec = self._read_spec(key)
        name = f"ReadBigQuery({table if query is None else 'query'})"
        return streams_dataset(spec, [stream.name for stream in session.streams], schema, name)

    def has_table(self, table: str) -> bool:
        """Whether `table` exists."""
        from google.api_core.exceptions import NotFound

        what = self._describe(f"table {table}", None)
        try:
            self._client().get_table(self._table_id(table), retry=self._retry())
            return True
        except NotFound:
            return False
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
        """Replace each partition of `partition` in `table` with its rows of `data`, one load
        job per partition decorator (`WRITE_TRUNCATE` of `table$20240102`); without a partition,
        replace the whole table's rows. Creates the table, partitioned by the slice's column,
        when it is missing. The rows written."""
        from ray_assets.connectors.bigquery.writes import replace_partitions

        what = self._describe(f"table {table}", partition)
        try:
            client = self._client()
            batches, schema = arrow_stream(data)
            keys = typed_keys(partition, schema)
            return replace_partitions(
                client,
                self._table_id(table),
                schema,
                batches,
                slice_keys=keys,
                granularity=self.time_partitioning,
                what=what,
                retry=self._retry(),
            )
        except RayAssetsError:
            raise
        except Exception as error:
            raise self._error(what, error, written=False) from None

    # ------------------------------------------------------------------ helpers
    def _client(self) -> Any:
        from google.cloud import bigquery

        options = {"api_endpoint": self.api_endpoint} if self.api_endpoint else None
        return bigquery.Client(
            project=self.project,
            credentials=self._credentials(),
            location=self.location,
            client_options=options,
        )

    def _retry(self, *, storage: bool = False) -> Any:
        """The clients' own retry policy (transient errors, backoff), bounded in time."""
        if storage:
            from google.api_core import exceptions, retry

            transient = retry.if_exception_type(
                exceptions.ServiceUnavailable, exceptions.DeadlineExceeded
            )
            return retry.Retry(predicate=transient, timeout=self.retry_timeout_s)
        from google.cloud import bigquery

        return bigquery.DEFAULT_RETRY.with_timeout(self.retry_timeout_s)

    def _credentials(self) -> Any:
        from ray_assets.connectors.bigquery.reads import ReadClientSpec, credentials_of

        if self.credentials_json:
            from google.oauth2 import service_account

            return service_account.Credentials.from_service_account_info(self._credentials_info())
        return credentials_of(ReadClientSpec(None, False, self.anonymous))

    def _credentials_info(self) -> dict[str, Any]:
        try:
            return json.loads(self.credentials_json or "")
        except ValueError:
            raise WarehouseError(
                f"{self._describe('credentials', None)}: credentials_json is not JSON (the "
                "service account key file's text)"
            ) from None

    def _read_spec(self, credentials_ref: Any = None) -> Any:
        from ray_assets.connectors.bigquery.reads import ReadClientSpec

        return ReadClientSpec(
            self.read_endpoint, self.read_insecure, self.anonymous, credentials_ref
        )

    def _read_session(
        self, table_id: str, columns: list[str], restriction: str, streams: int
    ) -> Any:
        from google.cloud.bigquery_storage_v1 import types

        from ray_assets.connectors.bigquery.reads import read_client

        client = read_client(self._read_spec(), self._credentials())
        project, dataset, name = table_id.split(".")
        request = types.ReadSession(
            table=f"projects/{project}/datasets/{dataset}/tables/{name}",
            data_format=types.DataFormat.ARROW,
            read_options=types.ReadSession.TableReadOptions(
                selected_fields=columns, row_restriction=restriction
            ),
        )
        return client.create_read_session(
            parent=f"projects/{self.project}",
            read_session=request,
            max_stream_count=streams,
            retry=self._retry(storage=True),
        )

    def _run_query(self, client: Any, query: str, params: Mapping[str, Any]) -> str:
        """Run `query` with bound parameters into BigQuery's temporary table; its id."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter(name, _parameter_type(value), value)
                for name, value in params.items()
            ]
        )
        job = client.query(query, job_config=config, retry=self._retry())
        job.result(retry=self._retry())
        destination = job.destination
        return f"{destination.project}.{destination.dataset_id}.{destination.table_id}"

    def _table_id(self, table: str) -> str:
        parts = table.split(".")
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise ValueError(
                f"not a table name: {table!r}; give table, dataset.table or project.dataset.table"
            )
        return ".".join([self.project, self.dataset][: 3 - len(parts)] + parts)

    def _describe(self, target: str, partition: PartitionSlice | None) -> str:
        where = f" for {partition.describe()}" if partition is not None else ""
        return f"BigQueryProject({self.project}/{self.dataset}) {target}{where}"

    def _error(
        self, what: str, error: BaseException, *, written: bool | None = None
    ) -> WarehouseError:
        from google.api_core.exceptions import GoogleAPICallError

        from ray_assets.storage.ray_errors import describe_cause

        if isinstance(error, GoogleAPICallError):  # its own message beats its gRPC cause's
            cause = f"{type(error).__name__}: {error.message}"
        else:
            cause = describe_cause(error).strip()
        if self.credentials_json:
            secrets = [self.credentials_json]
            try:
                secrets += [str(v) for v in json.loads(self.credentials_json).values() if v]
            except ValueError:
                pass
            for secret in sorted(secrets, key=len, reverse=True):
                if len(secret) >= 8:
                    cause = cause.replace(secret, "***")
        tail = "; nothing was written, the table is as it was" if written is False else ""
        return WarehouseError(f"{what}: {cause}{tail}")


def _parameter_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, decimal.Decimal):
        return "NUMERIC"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP" if value.tzinfo else "DATETIME"
    if isinstance(value, dt.date):
        return "DATE"
    if isinstance(value, bytes):
        return "BYTES"
    return "STRING"
