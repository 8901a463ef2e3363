"""A local stand-in for BigQuery, for contract tests: no emulator installs here.

It answers the requests the real `google-cloud-bigquery` and `google-cloud-bigquery-storage`
clients send, over their real transports: REST on loopback (tables.get, multipart load jobs,
jobs.get, query jobs) and the Storage Read API over plain-text gRPC (CreateReadSession,
ReadRows, Arrow format). Tables live in memory as Arrow tables. It keeps BigQuery's rules that
the tests rely on: a load to `table$20240102` must hold only that partition's rows and replaces
exactly them; `WRITE_TRUNCATE` without a decorator replaces the table's rows; a load whose
column types differ from the table's fails and changes nothing. Row restrictions are evaluated
by DuckDB after the few GoogleSQL forms ray_assets writes are translated. Every request is
recorded for the tests to assert on.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

_BQ_TYPES = [
    (pa.types.is_boolean, "BOOLEAN"),
    (pa.types.is_integer, "INTEGER"),
    (pa.types.is_floating, "FLOAT"),
    (pa.types.is_decimal, "NUMERIC"),
    (pa.types.is_string, "STRING"),
    (pa.types.is_large_string, "STRING"),
    (pa.types.is_binary, "BYTES"),
    (pa.types.is_date, "DATE"),
]


def bq_type(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP" if kind.tz else "DATETIME"
    for test, name in _BQ_TYPES:
        if test(kind):
            return name
    raise ValueError(f"unsupported type {kind}")


@dataclass
class StoredTable:
    data: pa.Table
    partitioning: dict | None = None


@dataclass
class FakeBigQuery:
    tables: dict[str, StoredTable] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    jobs: dict[str, dict] = field(default_factory=dict)
    streams: dict[str, pa.Table] = field(default_factory=dict)
    answer_with: str = ""  # the table a query job's result is a copy of
    rest_url: str = ""
    grpc_endpoint: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ REST
    def get_table(self, table_id: str) -> tuple[int, dict]:
        stored = self.tables.get(table_id)
        if stored is None:
            return 404, _error(404, f"Not found: Table {table_id.replace('.', ':', 1)}", "notFound")
        project, dataset, table = table_id.split(".")
        resource = {
            "kind": "bigquery#table",
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
            "schema": {
                "fields": [
                    {"name": f.name, "type": bq_type(f.type), "mode": "NULLABLE"}
                    for f in stored.data.schema
                ]
            },
        }
        if stored.partitioning:
            resource["timePartitioning"] = stored.partitioning
        return 200, resource

    def load(self, project: str, config: dict, data: bytes) -> dict:
        load = config["configuration"]["load"]
        reference = load["destinationTable"]
        table, _, decorator = reference["tableId"].partition("$")
        table_id = f"{reference['projectId']}.{reference['datasetId']}.{table}"
        job_id = config.get("jobReference", {}).get("jobId") or uuid.uuid4().hex
        job = {
            "kind": "bigquery#job",
            "id": f"{project}:{job_id}",
            "jobReference": {"projectId": project, "jobId": job_id},
            "configuration": config["configuration"],
            "status": {"state": "DONE"},
        }
        try:
            rows = pq.read_table(pa.BufferReader(data))
            self._apply_load(table_id, decorator, load, rows)
            job["statistics"] = {"load": {"outputRows": str(rows.num_rows)}}
        except ValueError as error:
            job["status"]["errorResult"] = {"reason": "invalid", "message": str(error)}
            job["status"]["errors"] = [job["status"]["errorResult"]]
        self.jobs[job_id] = job
        return job

    def _apply_load(self, table_id: str, decorator: str, load: dict, rows: pa.Table) -> None:
        if load.get("writeDisposition") != "WRITE_TRUNCATE":
            raise ValueError("this fake only loads with WRITE_TRUNCATE")
        with self.lock:
            stored = self.tables.get(table_id)
            if stored is not None:
                old = {f.name: bq_type(f.type) for f in stored.data.schema}
                for f in rows.schema:
                    if f.name in old and old[f.name] != bq_type(f.type):
                        raise ValueError(
                            f"Provided Schema does not match Table {table_id}. Field {f.name} "
                            f"has changed type from {old[f.name]} to {bq_type(f.type)}"
                        )
            if not decorator:
                self.tables[table_id] = StoredTable(rows, load.get("timePartitioning"))
                return
            partitioning = (stored.partitioning if stored else None) or load.get("timePartitioning")
            if not partitioning:
                raise ValueError(f"Table {table_id} is not partitioned: no decorator allowed")
            column = partitioning["field"]
            formats = {"DAY": "%Y%m%d", "HOUR": "%Y%m%d%H", "MONTH": "%Y%m", "YEAR": "%Y"}
            fmt = formats[partitioning.get("type", "DAY")]
            outside = [
                v for v in rows[column].to_pylist() if v is None or v.strftime(fmt) != decorator
            ]
            if outside:
                raise ValueError(
                    f"Some rows belong to different partitions rather than destination "
                    f"partition {decorator}"
                )
            kept = stored.data if stored else rows.schema.empty_table()
            mask = [v is None or v.strftime(fmt) != decorator for v in kept[column].to_pylist()]
            kept = kept.filter(pa.array(mask, pa.bool_()))
            self.tables[table_id] = StoredTable(
                pa.concat_tables([kept, rows.cast(kept.schema)]), partitioning
            )

    def query(self, project: str, config: dict) -> dict:
        """A query job: recorded; its result is the table named by `answer_with`."""
        job_id = config.get("jobReference", {}).get("jobId") or uuid.uuid4().hex
        source = self.tables[self.answer_with]
        target = f"{project}._anonymous.result_{job_id}"
        self.tables[target] = StoredTable(source.data)
        _, dataset, table = target.split(".")
        config["configuration"]["query"]["destinationTable"] = {
            "projectId": project,
            "datasetId": dataset,
            "tableId": table,
        }
        job = {
            "kind": "bigquery#job",
            "id": f"{project}:{job_id}",
            "jobReference": {"projectId": project, "jobId": job_id},
            "configuration": config["configuration"],
            "status": {"state": "DONE"},
            "statistics": {"query": {"statementType": "SELECT"}},
        }
        self.jobs[job_id] = job
        return job

    # ------------------------------------------------------------ Storage Read API
    def create_read_session(self, request: Any) -> Any:
        from google.cloud.bigquery_storage_v1 import types

        _, project, _, dataset, _, table = request.read_session.table.split("/")
        stored = self.tables[f"{project}.{dataset}.{table}"]
        options = request.read_session.read_options
        selected = list(options.selected_fields) or stored.data.column_names
        rows = _restricted(stored.data, options.row_restriction).select(selected)
        count = min(max(1, request.max_stream_count), max(1, -(-rows.num_rows // 1_000)))
        session_id = uuid.uuid4().hex
        names = []
        if rows.num_rows:
            step = -(-rows.num_rows // count)
            for index in range(count):
                name = f"projects/{project}/locations/us/sessions/{session_id}/streams/{index}"
                self.streams[name] = rows.slice(index * step, step)
                names.append(name)
        return types.ReadSession(
            name=f"projects/{project}/locations/us/sessions/{session_id}",
            table=request.read_session.table,
            data_format=types.DataFormat.ARROW,
            arrow_schema=types.ArrowSchema(serialized_schema=rows.schema.serialize().to_pybytes()),
            streams=[types.ReadStream(name=name) for name in names],
        )

    def read_rows(self, request: Any) -> Any:
        from google.cloud.bigquery_storage_v1 import types

        rows = self.streams[request.read_stream].slice(request.offset)
        for batch in rows.to_batches(max_chunksize=500):
            yield types.ReadRowsResponse(
                arrow_record_batch=types.ArrowRecordBatch(
                    serialized_record_batch=batch.serialize().to_pybytes(), row_count=batch.num_rows
                ),
                row_count=batch.num_rows,
            )

    def record(self, kind: str, **details: Any) -> None:
        with self.lock:
            self.requests.append({"kind": kind, **details})


def _restricted(table: pa.Table, restriction: str) -> pa.Table:
    """The rows of `table` that `restriction` (GoogleSQL) keeps, evaluated by DuckDB."""
    if not restriction:
        return table
    import duckdb

    params: list[Any] = []

    def decoded(match: re.Match) -> str:
        params.append(base64.b64decode(match[1]).decode())
        return "?"

    text = re.sub(r"CAST\(FROM_BASE64\('([A-Za-z0-9+/=]*)'\) AS STRING\)", decoded, restriction)
    text = re.sub(r"`((?:[^`\\]|\\.)*)`", lambda m: '"' + m[1].replace('"', '""') + '"', text)
    text = text.replace("DATETIME '", "TIMESTAMP '").replace("AS FLOAT64)", "AS DOUBLE)")
    connection = duckdb.connect()
    connection.register("source", table)
    return connection.execute(f"SELECT * FROM source WHERE {text}", params).to_arrow_table()


def _error(code: int, message: str, reason: str) -> dict:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }


def _multipart(content_type: str, body: bytes) -> tuple[dict, bytes]:
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)[1].encode()
    parts = [p for p in body.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
    metadata, data = (p.split(b"\r\n\r\n", 1)[1] for p in parts[:2])
    return json.loads(metadata), data.removesuffix(b"\r\n")


def start(fake: FakeBigQuery) -> tuple[ThreadingHTTPServer, Any]:
    """Serve `fake` on loopback: REST on an HTTP port, the Storage Read API on a gRPC port."""
    import grpc
    from google.cloud.bigquery_storage_v1 import types

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            fake.record("GET", path=path)
            if m := re.fullmatch(
                r"/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)", path
            ):
                self._send(*fake.get_table(".".join(m.groups())))
            elif m := re.fullmatch(r"/bigquery/v2/projects/([^/]+)/jobs/([^/]+)", path):
                self._send(200, fake.jobs[m[2]])
            elif m := re.fullmatch(r"/bigquery/v2/projects/([^/]+)/queries/([^/]+)", path):
                job = fake.jobs[m[2]]
                self._send(
                    200,
                    {
                        "kind": "bigquery#getQueryResultsResponse",
                        "jobReference": job["jobReference"],
                        "jobComplete": True,
                        "totalRows": "0",
                        "schema": {"fields": []},
                    },
                )
            else:
                self._send(404, _error(404, f"no route {path}", "notFound"))

        def do_POST(self) -> None:
            split = urlsplit(self.path)
            path = unquote(split.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if m := re.fullmatch(r"/upload/bigquery/v2/projects/([^/]+)/jobs", path):
                config, data = _multipart(self.headers["Content-Type"], body)
                fake.record("load", path=path, query=split.query, config=config, bytes=len(data))
                self._send(200, fake.load(m[1], config, data))
            elif m := re.fullmatch(r"/bigquery/v2/projects/([^/]+)/jobs", path):
                config = json.loads(body)
                fake.record("query", path=path, config=config)
                self._send(200, fake.query(m[1], config))
            else:
                fake.record("POST", path=path)
                self._send(404, _error(404, f"no route {path}", "notFound"))

        def do_DELETE(self) -> None:
            fake.record("DELETE", path=unquote(urlsplit(self.path).path))
            self._send(403, _error(403, "this fake never deletes", "accessDenied"))

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, name="fake BigQuery REST", daemon=True).start()
    fake.rest_url = f"http://127.0.0.1:{http.server_address[1]}"

    def create(request: Any, context: Any) -> Any:
        fake.record(
            "CreateReadSession",
            table=request.read_session.table,
            selected_fields=list(request.read_session.read_options.selected_fields),
            row_restriction=request.read_session.read_options.row_restriction,
            max_stream_count=request.max_stream_count,
        )
        return fake.create_read_session(request)

    def read(request: Any, context: Any) -> Any:
        fake.record("ReadRows", stream=request.read_stream, offset=request.offset)
        yield from fake.read_rows(request)

    service = "google.cloud.bigquery.storage.v1.BigQueryRead"
    handler = grpc.method_handlers_generic_handler(
        service,
        {
            "CreateReadSession": grpc.unary_unary_rpc_method_handler(
                create,
                request_deserializer=types.CreateReadSessionRequest.deserialize,
                response_serializer=types.ReadSession.serialize,
            ),
            "ReadRows": grpc.unary_stream_rpc_method_handler(
                read,
                request_deserializer=types.ReadRowsRequest.deserialize,
                response_serializer=types.ReadRowsResponse.serialize,
            ),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    fake.grpc_endpoint = f"127.0.0.1:{port}"
    return http, server
