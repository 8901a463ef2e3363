"""A BigQuery table as a Ray Dataset, one read task per Storage Read API stream.

The driver opens one read session (the columns and the row restriction are applied by BigQuery,
before any byte leaves it) and asks for up to as many streams as the read wants tasks; BigQuery
decides how many it gives. Each task opens its stream and decodes the Arrow record batches it
sends, resuming at its offset if the connection drops (the client's `ReadRowsStream`). Service
account credentials reach the tasks through Ray's object store only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import ray  # noqa: TID253 - imported lazily by BigQueryProject.read
import ray.data  # noqa: TID253

from ray_assets.connectors.read_tasks import FixedReadsDatasource


@dataclass(frozen=True)
class ReadClientSpec:
    """How a process builds its Storage Read client: Google's endpoint or another (`host:port`
    of an emulator, `insecure` for plain-text gRPC on loopback), and whose credentials (a
    reference to the service account's info in the object store; None: the machine's default
    credentials, or none at all when `anonymous`)."""

    endpoint: str | None
    insecure: bool
    anonymous: bool
    credentials_ref: Any = None


def read_client(spec: ReadClientSpec, credentials: Any = None) -> Any:
    """The Storage Read client `spec` describes (`credentials`: the driver's own, in hand)."""
    from google.cloud import bigquery_storage_v1

    if spec.insecure and spec.endpoint:
        import grpc
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
            BigQueryReadGrpcTransport,
        )

        channel = grpc.insecure_channel(spec.endpoint)
        return bigquery_storage_v1.BigQueryReadClient(
            transport=BigQueryReadGrpcTransport(channel=channel)
        )
    options = {"api_endpoint": spec.endpoint} if spec.endpoint else None
    return bigquery_storage_v1.BigQueryReadClient(
        credentials=credentials or credentials_of(spec), client_options=options
    )


def credentials_of(spec: ReadClientSpec) -> Any:
    if spec.anonymous:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    if spec.credentials_ref is not None:
        from google.oauth2 import service_account

        info = ray.get(spec.credentials_ref)
        return service_account.Credentials.from_service_account_info(info)
    return None  # the client finds the machine's default credentials


def streams_dataset(
    spec: ReadClientSpec, streams: Sequence[str], schema: pa.Schema, name: str
) -> ray.data.Dataset:
    """One read task per stream of a read session (none when no row matches)."""
    reads = [(lambda stream=stream: read_stream(spec, stream, schema), None) for stream in streams]
    return FixedReadsDatasource(name, schema, reads).dataset()


def read_stream(spec: ReadClientSpec, stream: str, schema: pa.Schema) -> Iterator[pa.Table]:
    client = read_client(spec)
    read_any = False
    for response in client.read_rows(stream):
        payload = response.arrow_record_batch.serialized_record_batch
        if payload:
            batch = pa.ipc.read_record_batch(pa.py_buffer(payload), schema)
            if batch.num_rows:
                read_any = True
                yield pa.Table.from_batches([batch])
    if not read_any:
        yield schema.empty_table()
