"""What every server a test starts on loopback needs: a free port, and a readiness probe."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import IO


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, log: IO[bytes], name: str) -> None:
    """Connect until the server accepts (a readiness probe, not a sleep); its log if it exits."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{name} exited: {log.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)  # polling a port that is not open yet
    raise RuntimeError(f"{name} did not listen within 60 s")
