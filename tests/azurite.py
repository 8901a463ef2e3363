"""A real Azure Blob Storage server on loopback for the tests: Microsoft's Azurite emulator.

Azurite is a Node.js program from the npm registry; `.ci/run` installs it into `.azurite/`
(`npm install --prefix .azurite azurite@VERSION`). It speaks the Blob REST API with shared-key
authentication (wrong keys get 403) and honours conditional requests (`If-None-Match: *` gets
409/412 once the blob exists), which is what delta-rs commits with on Azure. It runs here with
in-memory storage, blob service only, on a free port.

The account is Azurite's documented development account; its key is public, so the tests also
use a second, made-up key as the canary that must never appear in an error message.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.local_servers import free_port, wait_until_listening

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (published in Microsoft's docs; not a secret).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
BINARY = Path(__file__).resolve().parents[1] / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
INSTALL_HINT = (
    "Azurite is not installed: run `npm install --prefix .azurite --no-audit --no-fund "
    "azurite@3.35.0` in the repository root (.ci/run does)"
)


@dataclass(frozen=True)
class AzuriteServer:
    endpoint: str  # path-style account URL: http://127.0.0.1:PORT/devstoreaccount1
    container: str
    account: str = ACCOUNT
    account_key: str = ACCOUNT_KEY

    @property
    def storage_options(self) -> dict[str, str]:
        """delta-rs storage options (also what the Ray tasks' pyarrow filesystem is made from)."""
        return {
            "AZURE_STORAGE_ACCOUNT_NAME": self.account,
            "AZURE_STORAGE_ACCOUNT_KEY": self.account_key,
            "AZURE_STORAGE_ENDPOINT": self.endpoint,
            "AZURE_ALLOW_HTTP": "true",
        }

    def uri(self, *parts: str) -> str:
        """`az://CONTAINER/...`, the fsspec-style URI (the account comes from the options)."""
        return "/".join([f"az://{self.container}", *parts])

    def abfss_uri(self, *parts: str) -> str:
        """`abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/...`, the Hadoop-style URI."""
        return "/".join([f"abfss://{self.container}@{self.account}.dfs.core.windows.net", *parts])

    def filesystem(self):  # noqa: ANN201 - pyarrow.fs.AzureFileSystem
        import pyarrow.fs as pafs

        authority = self.endpoint.split("://", 1)[1].rsplit("/", 1)[0]
        return pafs.AzureFileSystem(
            account_name=self.account,
            account_key=self.account_key,
            blob_storage_authority=authority,
            dfs_storage_authority=authority,
            blob_storage_scheme="http",
            dfs_storage_scheme="http",
        )


def installed() -> bool:
    return BINARY.exists()


@contextlib.contextmanager
def running_server(container: str = "lake") -> Iterator[AzuriteServer]:
    """Start Azurite's blob service on a free loopback port with one container; stop it at the
    end. Its own process, like the S3 server: nothing in the test process serves requests."""
    port = free_port()
    workspace = tempfile.TemporaryDirectory(prefix="azurite-")
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [
            str(BINARY),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",  # (then no --location: its folder is the process's cwd)
            "--skipApiVersionCheck",  # object_store and pyarrow's SDK send newer API versions
            "--disableTelemetry",
            "--silent",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workspace.name,
    )
    try:
        server = AzuriteServer(endpoint=f"http://127.0.0.1:{port}/{ACCOUNT}", container=container)
        wait_until_listening(port, process, log, "Azurite")
        server.filesystem().create_dir(container)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        log.close()
        workspace.cleanup()
