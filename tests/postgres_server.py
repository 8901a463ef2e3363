"""A throwaway PostgreSQL server for the tests: `initdb` into a temporary folder, `pg_ctl start` on
a free loopback port, stopped and removed at the end.

`RAY_ASSETS_TEST_POSTGRES_URL` (a `postgresql://user:password@host:port/db` URL of a superuser
on a database the tests may fill) points the tests at a server of your own instead. As root
(containers), the server runs as the `postgres` user that Debian's package creates, since
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "ray_assets"
PASSWORD = "pg-test-Secret-7781"  # the throwaway server's superuser; not a real credential


@dataclass(frozen=True)
class PostgresServer:
    """A running server: its superuser URL, and its log (every statement the server received,
    with its bound parameters apart) when the tests started it."""

    url: str
    log: Path | None

    def statements_logged(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""


def binaries() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: on the PATH, or Debian's versioned folder."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(folders[-1]) if folders else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A fresh server, stopped (immediately) and deleted on exit."""
    own = os.environ.get("RAY_ASSETS_TEST_POSTGRES_URL")
    if own:
        yield PostgresServer(own, None)
        return
    folder = binaries()
    if folder is None:
        raise RuntimeError(
            "PostgreSQL's initdb/pg_ctl are not installed: install Debian's `postgresql` package "
            "(`.ci/run` does) or set RAY_ASSETS_TEST_POSTGRES_URL to a server of your own"
        )
    root = Path(tempfile.mkdtemp(prefix="ray-assets-pg-"))
    data, password_file = root / "data", root / "password"
    password_file.write_text(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(password_file, "postgres", "postgres")
    root.chmod(0o700)
    port = _free_port()
    log = root / "server.log"
    try:
        subprocess.run(
            _as_server_user(
                [
                    str(folder / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    USER,
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60 "
            "-c log_statement=all -c log_min_error_statement=panic"
        )
        subprocess.run(
            _as_server_user(
                [
                    str(folder / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(log),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        yield PostgresServer(f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres", log)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_server_user(
                    [str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
                ),
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)
