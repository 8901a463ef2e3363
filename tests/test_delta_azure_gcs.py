"""DeltaStore on Azure Blob Storage and Google Cloud Storage.

Azure: the Delta suite's core promises on a real Azure Blob server on loopback (Azurite, in its
own process), through both URI styles (`az://` and `abfss://`), plus what the server must do
for two writers (refuse a second write of one log entry) and what a wrong key must not do
(leak, or write anything).

GCS: no local server speaks the API delta-rs uses (object_store's GCS client lists, reads and
commits through the XML API: `GET /BUCKET?list-type=2&start-after=...`, `PUT /BUCKET/OBJECT`
with `x-goog-if-generation-match: 0`; fake-gcs-server answers that PUT with 400 "invalid
uploadType" and gcp-storage-emulator answers the list with 501), so only the mapping of
delta-rs' GCS storage options to the Ray tasks' pyarrow filesystem is tested here, including
a service-account key turned into an access token by a token endpoint on loopback.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import azurite  # tests/azurite.py (tests/ is on sys.path, as for conftest's imports)
import pyarrow as pa
import pytest

from ray_assets import (
    DeltaStore,
    PipelineFailedError,
    RayAssetsError,
    SchemaMismatchError,
    StrayPartitionValuesError,
)
from ray_assets.errors import ObjectStoreError
from ray_assets.storage.filesystem import redact_uri, resolve_filesystem, scrub_secrets
from tests.lakes import DAYS, Lake, daily, orders, rows_by_day

# A well-formed (base64) account key that is not Azurite's: the canary that must stay secret.
WRONG_KEY = base64.b64encode(b"canary-Azure-secret-7f3a9c01-not-the-key").decode()


@pytest.fixture(scope="module")
def azure() -> Iterator[azurite.AzuriteServer]:
    if not azurite.installed():
        pytest.skip(azurite.INSTALL_HINT)
    with azurite.running_server() as server:
        yield server


@pytest.fixture(params=["az", "abfss"])
def lake(request, tmp_path, azure) -> Lake:
    """A fresh folder of the container, as `az://container/...` or `abfss://container@...`."""
    root = azure.uri(tmp_path.name) if request.param == "az" else azure.abfss_uri(tmp_path.name)
    return Lake(root, azure.storage_options)


def order_ids(store: DeltaStore, day: str) -> list[int]:
    return sorted(row["order_id"] for row in store.read(daily([day]), ["order_id"]).take_all())


# ---------------------------------------------------------------------------------- Azure
def test_range_write_pruned_read_and_rerun(ray_session, lake) -> None:
    store = lake.store("orders")
    first = store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    assert first.table_version == 0 and rows_by_day(store) == dict.fromkeys(DAYS, 50)
    assert order_ids(store, "2024-01-02") == list(range(1, 150, 3))  # that day's rows only
    again = store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    assert not again.committed and store.version() == 0  # the same run changes nothing
    assert first.table_uri == lake.uri("orders")  # as given: the container stays in abfss URIs


def test_a_write_of_other_partitions_keeps_the_neighbours(ray_session, lake) -> None:
    store = lake.store("orders")
    store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    store.write(orders(["2024-01-02"], rows_per_day=7), daily(["2024-01-02"]), write_id="run-2")
    assert store.version() == 1
    assert rows_by_day(store) == {"2024-01-01": 50, "2024-01-02": 7, "2024-01-03": 50}
    assert order_ids(store, "2024-01-02") == list(range(7))
    assert order_ids(store, "2024-01-03") == list(range(2, 150, 3))


def test_strays_schema_drift_and_failed_pipelines_commit_nothing(ray_session, azure, tmp_path):
    import ray.data

    store = Lake(azure.uri(tmp_path.name), azure.storage_options).store("orders")
    store.write(orders(DAYS), daily(DAYS), write_id="run-1")
    with pytest.raises(StrayPartitionValuesError, match="2024-01-03: 50 row"):
        store.write(orders(DAYS), daily(["2024-01-01", "2024-01-02"]))
    drifted = pa.table({"order_id": ["a"], "order_date": ["2024-01-01"], "amount": [1.0]})
    with pytest.raises(SchemaMismatchError, match="order_id: table has int64, data has string"):
        store.write(ray.data.from_arrow(drifted), daily(["2024-01-01"]))

    def poison(batch: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("amount is not a number in order 7")

    with pytest.raises(PipelineFailedError, match="amount is not a number in order 7"):
        store.write(orders(["2024-01-02"], 9).map_batches(poison), daily(["2024-01-02"]))
    assert store.version() == 0 and rows_by_day(store) == dict.fromkeys(DAYS, 50)
    assert order_ids(store, "2024-01-02") == list(range(1, 150, 3))


def test_the_server_refuses_a_second_write_of_one_log_entry(azure, tmp_path) -> None:
    """Two delta-rs writers that loaded the same version: the second one's put of that version's
    log entry is refused by the server (`If-None-Match: *`), so it retries as the next version
    instead of replacing the first one's commit."""
    from deltalake import DeltaTable, write_deltalake

    uri = azure.uri(tmp_path.name, "race")
    options = azure.storage_options
    write_deltalake(uri, pa.table({"writer": ["setup"]}), storage_options=options)
    first = DeltaTable(uri, storage_options=options)
    second = DeltaTable(uri, storage_options=options)
    write_deltalake(first, pa.table({"writer": ["first"]}), mode="append")
    write_deltalake(second, pa.table({"writer": ["second"]}), mode="append")
    table = DeltaTable(uri, storage_options=options)
    assert table.version() == 2 and len(table.file_uris()) == 3  # no commit lost


def test_a_wrong_key_fails_naming_the_table_and_writes_nothing(ray_session, azure, tmp_path):
    good = Lake(azure.uri(tmp_path.name), azure.storage_options).store("orders")
    good.write(orders(["2024-01-01"]), daily(["2024-01-01"]), write_id="run-1")
    wrong = {**azure.storage_options, "AZURE_STORAGE_ACCOUNT_KEY": WRONG_KEY}
    for uri in (good.table_uri, azure.abfss_uri(tmp_path.name, "orders")):
        with pytest.raises(ObjectStoreError) as raised:
            DeltaStore(uri, storage_options=wrong).write(
                orders(["2024-01-02"]), daily(["2024-01-02"])
            )
        message = str(raised.value)
        assert f"table {uri}:" in message and "nothing was read or written" in message
        assert WRONG_KEY not in message and "403" in message
    assert good.version() == 0 and rows_by_day(good) == {"2024-01-01": 50}


# ------------------------------------------------------------- option mapping (no server)
def arguments(filesystem: Any) -> dict[str, Any]:
    """The arguments a pyarrow filesystem was made with (what it pickles)."""
    return filesystem.__reduce__()[1][0]


@pytest.mark.parametrize(
    ("uri", "options", "expected", "root"),
    [
        (  # Azurite: path-style endpoint, env-var style keys
            "az://lake/t",
            {
                "AZURE_STORAGE_ACCOUNT_NAME": "devstoreaccount1",
                "AZURE_STORAGE_ACCOUNT_KEY": "a2V5",
                "AZURE_STORAGE_ENDPOINT": "http://127.0.0.1:10000/devstoreaccount1",
            },
            {"blob_storage_authority": "127.0.0.1:10000", "blob_storage_scheme": "http"},
            "lake/t",
        ),
        (  # the account from an abfss URI, a SAS token, the default endpoints
            "abfss://data@acct.dfs.core.windows.net/a/b",
            {"azure_storage_sas_token": "?sv=2024&sig=c2ln"},
            {
                "account_name": "acct",
                "sas_token": "sv=2024&sig=c2ln",
                "blob_storage_authority": ".blob.core.windows.net",
                "dfs_storage_authority": ".dfs.core.windows.net",
            },
            "data/a/b",
        ),
        (  # an account-host endpoint and a service principal
            "az://c/t",
            {
                "account_name": "acct",
                "azure_storage_endpoint": "https://acct.blob.core.windows.net",
                "azure_client_id": "id",
                "azure_client_secret": "s3cr3t",
                "azure_tenant_id": "tenant",
            },
            {
                "blob_storage_authority": ".blob.core.windows.net",
                "dfs_storage_authority": ".dfs.core.windows.net",
                "blob_storage_scheme": "https",
                "client_id": "id",
                "client_secret": "s3cr3t",
                "tenant_id": "tenant",
            },
            "c/t",
        ),
        (  # a user-assigned managed identity's client id (no secret): pyarrow's managed identity
            "az://c/t",
            {"account_name": "acct", "azure_client_id": "identity"},
            {"client_id": "identity", "client_secret": "", "account_key": "", "sas_token": ""},
            "c/t",
        ),
        (  # object_store's emulator mode: Azurite's account, key and default address
            "az://c/t",
            {"azure_storage_use_emulator": "true"},
            {
                "account_name": "devstoreaccount1",
                "account_key": azurite.ACCOUNT_KEY,
                "blob_storage_authority": "127.0.0.1:10000",
                "dfs_storage_authority": "127.0.0.1:10000",
            },
            "c/t",
        ),
    ],
)
def test_azure_options_map_to_pyarrow(uri, options, expected, root, monkeypatch) -> None:
    for name in ("AZURITE_BLOB_STORAGE_URL", "AZURE_CLIENT_ID", "AZURE_STORAGE_ACCOUNT_KEY"):
        monkeypatch.delenv(name, raising=False)
    filesystem, path = resolve_filesystem(uri, options)
    assert {k: arguments(filesystem)[k] for k in expected} == expected and path == root


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "no Azure storage account"),
        ({"account_name": "a", "azure_storage_token": "bearer"}, "bearer token"),
        ({"account_name": "a", "endpoint": "http://127.0.0.1:1/b"}, "neither"),
    ],
)
def test_azure_options_pyarrow_cannot_use_are_refused_up_front(options, match) -> None:
    with pytest.raises(RayAssetsError, match=f"table az://lake/t: .*{match}"):
        DeltaStore("az://lake/t", storage_options=options)


def test_abfss_uris_keep_their_container_and_secrets_stay_out_of_errors() -> None:
    uri = "abfss://data@acct.dfs.core.windows.net/orders"
    assert redact_uri(uri) == uri
    assert redact_uri("abfss://data:pw@acct.dfs.core.windows.net/o") == (
        "abfss://acct.dfs.core.windows.net/o"
    )
    key = json.dumps({"private_key": "-----BEGIN PRIVATE KEY-----abc", "client_email": "x@y"})
    text = "refused: -----BEGIN PRIVATE KEY-----abc; key=a2V5a2V5; sas sv=1&sig=zz"
    options = {"google_service_account_key": key, "account_key": "a2V5a2V5", "sas": "sv=1&sig=zz"}
    assert scrub_secrets(text, options) == "refused: ***; key=***; sas ***"


def test_gcs_emulator_options_map_to_an_anonymous_filesystem() -> None:
    emulator_key = json.dumps({"gcs_base_url": "http://127.0.0.1:4443", "disable_oauth": True})
    for options in (
        {"google_service_account_key": emulator_key, "retry_timeout": "30s"},
        {"GOOGLE_BASE_URL": "http://127.0.0.1:4443", "google_skip_signature": "true"},
    ):
        filesystem, root = resolve_filesystem("gs://bucket/a/b", options)
        given = arguments(filesystem)
        assert given["anonymous"] and (given["endpoint_override"], given["scheme"]) == (
            "127.0.0.1:4443",
            "http",
        )
        assert root == "bucket/a/b"
    with pytest.raises(RayAssetsError, match="table gs://bucket/t: the GCS base URL"):
        DeltaStore("gs://bucket/t", storage_options={"google_base_url": "http://h:1/prefix"})


@pytest.fixture
def token_endpoint() -> Iterator[dict[str, Any]]:
    """An OAuth token endpoint on loopback that counts the assertions it gets."""
    seen: dict[str, Any] = {"requests": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            seen["requests"] += 1
            body = json.dumps({"access_token": "minted-1", "expires_in": 3600}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen["uri"] = f"http://127.0.0.1:{server.server_address[1]}/token"
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_gcs_service_account_key_reaches_pyarrow_as_a_cached_token(token_endpoint) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key = {
        "type": "service_account",
        "client_email": "writer@project.iam.gserviceaccount.com",
        "private_key": pem,
        "private_key_id": "key-1",
        "token_uri": token_endpoint["uri"],
    }
    options = {"google_service_account_key": json.dumps(key)}
    for _ in range(2):
        given = arguments(resolve_filesystem("gs://bucket/t", options)[0])
        assert given["access_token"] == "minted-1" and not given["anonymous"]
        assert given["credential_token_expiration"] is not None
    assert token_endpoint["requests"] == 1  # minted once per process, not per task
