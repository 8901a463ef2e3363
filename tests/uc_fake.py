"""A local stand-in for Unity Catalog's REST API, for contract tests: no UC server installs here.

It answers the two requests a read needs, as Databricks and the open-source unitycatalog server
(api/all.yaml) define them, over HTTP on loopback, from an in-memory catalog:

- `GET /api/2.1/unity-catalog/tables/{full_name}` -> TableInfo (`table_id`, `storage_location`,
  `data_source_format`, `table_type`, `columns`), or 404 `TABLE_DOES_NOT_EXIST`;
- `POST /api/2.1/unity-catalog/temporary-table-credentials` with `{"table_id", "operation"}` ->
  TemporaryCredentials (the table's `credentials`, plus `expiration_time` and `url`).

Every request needs `Authorization: Bearer <token>` with the catalog's token (401
`UNAUTHENTICATED` otherwise); a token in `forbidden_tokens` is known but refused (403
`PERMISSION_DENIED`). Every request is recorded (method, path, headers, JSON body) before it is
answered, for the tests to assert the contract on.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

API = "/api/2.1/unity-catalog"


@dataclass
class FakeTable:
    full_name: str
    storage_location: str
    data_source_format: str = "DELTA"
    table_type: str = "EXTERNAL"
    columns: list[dict[str, Any]] = field(default_factory=list)
    credentials: dict[str, Any] = field(default_factory=dict)
    """What temporary-table-credentials vends, e.g. {"aws_temp_credentials": {...}}."""
    table_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def info(self) -> dict[str, Any]:
        catalog, schema, name = self.full_name.split(".")
        return {
            "name": name,
            "catalog_name": catalog,
            "schema_name": schema,
            "full_name": self.full_name,
            "table_type": self.table_type,
            "data_source_format": self.data_source_format,
            "columns": self.columns,
            "storage_location": self.storage_location,
            "table_id": self.table_id,
            "owner": "someone@example.com",
            "created_at": 1_700_000_000_000,
        }


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeUnityCatalog:
    token: str
    forbidden_tokens: set[str] = field(default_factory=set)
    tables: dict[str, FakeTable] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    host: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, table: FakeTable) -> FakeTable:
        self.tables[table.full_name] = table
        return table

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple:
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        with self.lock:
            self.requests.append(Recorded(method, path, headers, body))
        authorization = headers.get("authorization", "")
        presented = authorization.removeprefix("Bearer ") if authorization else ""
        if presented in self.forbidden_tokens:
            return 403, _error("PERMISSION_DENIED", "User does not have USE SCHEMA on Schema.")
        if not authorization.startswith("Bearer ") or presented != self.token:
            return 401, _error("UNAUTHENTICATED", "Invalid access token.")
        if method == "GET" and path.startswith(f"{API}/tables/"):
            full_name = unquote(path[len(f"{API}/tables/") :])
            table = self.tables.get(full_name)
            if table is None:
                return 404, _error("TABLE_DOES_NOT_EXIST", f"Table '{full_name}' does not exist.")
            return 200, table.info()
        if method == "POST" and path == f"{API}/temporary-table-credentials":
            if not isinstance(body, dict) or body.get("operation") not in ("READ", "READ_WRITE"):
                return 400, _error("INVALID_PARAMETER_VALUE", "table_id and operation required")
            table = next((t for t in self.tables.values() if t.table_id == body["table_id"]), None)
            if table is None:
                return 404, _error("TABLE_DOES_NOT_EXIST", f"Table {body['table_id']} not found")
            return 200, {
                **table.credentials,
                "expiration_time": int(time.time() * 1000) + 3_600_000,
                "url": table.storage_location,
            }
        return 404, _error("ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error_code": code, "message": message, "details": []}


@contextlib.contextmanager
def running_catalog(token: str) -> Iterator[FakeUnityCatalog]:
    """The fake on a free loopback port, served by a thread; stopped at the end."""
    catalog = FakeUnityCatalog(token=token)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, body = catalog.answer(self.command, urlsplit(self.path).path, headers, raw)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - its signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="uc-fake", daemon=True
    )
    thread.start()
    catalog.host = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield catalog
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
