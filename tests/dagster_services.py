"""What the tests that run Dagster's own processes share: the reference location's environment
over the test session's Ray, and Dagster services (daemon, webserver, `dagster dev`) started in a
process group of their own and stopped by that group only."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]


def location_environment(
    home: Path, root: Path, ray_address: str, rows_per_day: int
) -> dict[str, str]:
    """This process's environment for the reference location's `cluster` resources: the
    instance at `home`, tables and the CRM database under `root`, runs on the given Ray."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RAY_ASSETS_ENV": "cluster",
        "RAY_ADDRESS": ray_address,
        "RAY_ASSETS_TABLE_ROOT": str(root / "tables"),
        "RAY_ASSETS_LANDING_DIR": str(root / "landing"),
        "RAY_ASSETS_ROWS_PER_DAY": str(rows_per_day),
        "RAY_ASSETS_CRM_URL": f"sqlite:///{root}/crm.db",
    }


def start_service(command: list[str], environment: dict[str, str], log: IO) -> subprocess.Popen:
    """A Dagster command of the venv (`dagster-daemon`, `dagster-webserver`, `dagster`) in a
    process group of its own, its output in `log`."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / command[0]), *command[1:]],
        cwd=REPO,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_service(process: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM to the service's group, SIGKILL to it if it has not exited after `timeout_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def running_service(
    command: list[str], environment: dict[str, str], log: IO, stop_timeout_s: float = 60
) -> Iterator[subprocess.Popen]:
    """`start_service`, stopped on exit."""
    process = start_service(command, environment, log)
    try:
        yield process
    finally:
        stop_service(process, stop_timeout_s)
