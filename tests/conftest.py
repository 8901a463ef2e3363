"""Real parts for the suite: one Ray session shared by every test, fresh tables per test.

Ray starts once (about 7 s on two cores) with a small object store; tests that need it ask for
`ray_session`. Delta tables are written under pytest's `tmp_path` and read back through
ray_assets' own file lists or the Delta log, never through deltalake's scanner, which can
abort the interpreter at exit.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """A Ray shared by the whole session; yields its GCS address for subprocess drivers."""
    import ray
    from ray.data import DataContext

    from ray_assets import RayResource
    from ray_assets.ray_resource import connectable_address

    RayResource(num_cpus=2, object_store_memory_bytes=256 * 1024**2).ensure_started()
    DataContext.get_current().enable_progress_bars = False
    try:
        yield connectable_address(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def delta_log_rows(table_uri: str | Path) -> dict[str, int]:
    """Rows per partition value (first partition column) from the Delta log, without a scan."""
    from deltalake import DeltaTable

    table = DeltaTable(str(table_uri))
    actions = pa.table(table.get_add_actions(flatten=True))
    columns = list(table.metadata().partition_columns)
    counts: dict[str, int] = {}
    for action in actions.to_pylist():
        key = "|".join(str(action[f"partition.{c}"]) for c in columns) if columns else ""
        counts[key] = counts.get(key, 0) + action["num_records"]
    return counts


def failure_text(result) -> str:  # noqa: ANN001 - a dagster.ExecuteInProcessResult
    """The whole chain of error messages of the run's (first) failed step."""
    return error_chain_text(result.get_step_failure_events()[0].step_failure_data.error)


def error_chain_text(error) -> str:  # noqa: ANN001 - a dagster SerializableErrorInfo or None
    """An error's message with its causes' (Dagster wraps a step's exception in its own)."""
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


def delta_version(table_uri: str | Path) -> int:
    from deltalake import DeltaTable

    return DeltaTable(str(table_uri)).version()


def file_digests(table_uri: str | Path) -> dict[str, str]:
    """sha256 of every live data file of the table, by relative path."""
    from ray_assets import DeltaStore, PartitionSlice

    store = DeltaStore(str(table_uri))
    root = store.table_uri
    return {
        os.path.relpath(f.path, root): hashlib.sha256(Path(f.path).read_bytes()).hexdigest()
        for f in store.data_files(PartitionSlice.unpartitioned("any"))
    }


def bare_ray_driver(address: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A bare Ray driver for the cluster at `address`, failing after a few seconds when the GCS
    refuses it (Ray's default waits 20 s)."""
    code = "import ray, sys; ray.init(address=sys.argv[1]); print(ray.cluster_resources()['CPU'])"
    return subprocess.run(
        [sys.executable, "-c", code, address],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAY_NUM_REDIS_GET_RETRIES": "2", **env},
    )


def dagster_cli(arguments: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess:
    """The `dagster` command of this environment, run from the repository root."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), *arguments],
        cwd=Path(__file__).resolve().parents[1],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (see `tests/postgres_server.py`)."""
    from postgres_server import running_server

    with running_server() as server:
        yield server


@pytest.fixture(scope="module")
def s3() -> Iterator:
    """A real S3-compatible server on loopback (moto, in its own process), one per module."""
    from tests.s3_server import running_server

    with running_server() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path):  # noqa: ANN001, ANN201
    """A test's tables on a local folder, then on the S3 server (the same cases on both)."""
    from tests.lakes import Lake

    if request.param == "local":
        return Lake(str(tmp_path))
    server = request.getfixturevalue("s3")
    return Lake(server.uri(tmp_path.name), server.storage_options)
