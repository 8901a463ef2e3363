"""The machine's shared local Ray head: started by the first run that needs Ray, found by every
later run, stopped once no run has used it for a while.

An embedded Ray costs each Dagster run process about 7.5 s of start and stop; connecting to a head
that is already up costs a few hundredths of a second (DESIGN.md, "Ray's lifetime across Dagster
processes"). One head per head directory (`~/.ray_assets/head`, or `$RAY_ASSETS_HEAD_DIR`), which
holds its record `head.json`, a lock, one file per client process and the logs:

- `find_or_start` takes the directory's lock, checks that the recorded head answers (its
  supervisor is alive and its GCS passes a gRPC health check within 2 s), clears a head that does
  not (a SIGKILLed head leaves its record and Ray's `ray_current_cluster` behind) and starts a
  fresh one, then registers the caller as a client before it lets the lock go. Two processes that
  start at once therefore get one head.
- The supervisor (`serve`, started detached) runs `ray start --head --block` in a session of its
  own, writes `head.json` once the head answers, and stops exactly that session when no client
  process has been alive for `idle_timeout_s`, or on SIGTERM. Never `ray stop`: it stops every Ray
  on the machine, a test session's embedded Ray included.

What Ray 2.60 needs for a head that only this machine can reach (each checked by experiment):

- Loopback: `ray start` and `ray.init(address=...)` replace 127.0.0.1 with the machine's routable
  IP on Linux, unless `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` was set when `ray` was imported. The
  head gets that variable, so its node IP stays 127.0.0.1 and every server binds 127.0.0.1 only.
  Clients, whose `ray` is usually imported long before, connect through the IPv4-mapped form
  `[::ffff:127.0.0.1]:port`, which Ray leaves alone and which reaches the same listener.
- Token authentication: `ray start` turns it on only when a token already exists or
  `RAY_AUTH_MODE=token`, and `ray.init(address=...)` never turns it on for the client. The head
  gets `RAY_AUTH_MODE=token`; clients turn token mode on in their process before connecting. Both
  read the token the same way: `RAY_AUTH_TOKEN`, else the file at `RAY_AUTH_TOKEN_PATH`, else
  `~/.ray/auth_token`; the supervisor creates that file (mode 0600) when there is no token yet.
- Ports: `ray start` defaults to fixed ports (GCS 6379, Ray Client 10001, dashboard agent 52365,
  workers 10002-19999) that collide with another Ray on the machine; the head gets free ports
  and random worker ports. Its Ray temp dir is its own, so its `ray_current_cluster` never sends
  a plain `ray.init()` elsewhere on the machine to this head.
- Stopping: SIGTERM makes `ray start --block` drain the node for up to 30 s first
  (`RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S`); with 0 it stops in about 4 s.

This module imports only the standard library at module level (and grpc, which Dagster ships,
for the health check), so the supervisor runs as a plain script without loading Dagster or Ray.
Command line: `python -m ray_assets.local_head status|stop [--head-dir DIR]`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

HEAD_DIR_ENV = "RAY_ASSETS_HEAD_DIR"
DEFAULT_HEAD_DIR = "~/.ray_assets/head"
LOOPBACK = "127.0.0.1"

RECORD_FILE = "head.json"
LOCK_FILE = "lock"
CLIENTS_DIR = "clients"
HEAD_LOG = "head.log"
SUPERVISOR_LOG = "supervisor.log"

HEALTH_TIMEOUT_S = 2.0
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
LAUNCH_ATTEMPTS = 3
"""`ray start` is tried this often. Its ports are picked free, then bound by Ray's processes
seconds later; a process of the machine can take one in between, and the Ray process that
loses the port exits, and `ray start --block` with it (in CI a head exited 1 s after its GCS
answered; holding the port of Ray Client's server reproduces it)."""
SETTLE_S = 2.0
"""How long a head that answers must stay up before it is recorded for clients."""
_POLL_S = 0.1
# grpc.health.v1.HealthCheckResponse{status: SERVING}, serialized
_SERVING = b"\x08\x01"

_log = logging.getLogger("ray_assets.local_head")


class SharedHeadError(RuntimeError):
    """The shared local head could not be started or stopped; the message names the log to read."""


@dataclass(frozen=True)
class HeadSpec:
    """The head to start. A head that is already up keeps the size it was started with."""

    num_cpus: int
    object_store_bytes: int
    num_gpus: int | None = None
    include_dashboard: bool = False
    idle_timeout_s: float = 600.0


@dataclass(frozen=True)
class HeadRecord:
    """Where a running head is and how it was started: the contents of `head.json`."""

    gcs_address: str
    supervisor_pid: int
    head_pid: int
    started_at: str
    num_cpus: int
    num_gpus: int | None
    object_store_bytes: int
    idle_timeout_s: float
    dashboard_url: str | None
    ray_temp_dir: str
    log_file: str

    @property
    def connect_address(self) -> str:
        """The address a client passes to `ray.init`: the GCS address in a form Ray keeps as is."""
        host, port = self.gcs_address.rsplit(":", 1)
        return f"[::ffff:{host}]:{port}" if host == LOOPBACK else self.gcs_address


def resolve_head_dir(configured: str | os.PathLike[str] | None = None) -> Path:
    """The head directory: `configured`, else `$RAY_ASSETS_HEAD_DIR`, else `~/.ray_assets/head`."""
    chosen = configured or os.environ.get(HEAD_DIR_ENV) or DEFAULT_HEAD_DIR
    return Path(chosen).expanduser().absolute()


def ray_temp_dir(head_dir: Path) -> Path:
    """Ray's temp dir for the head of `head_dir`: short, because Ray's Unix sockets live under it
    and a socket path may not exceed 107 bytes; one per user and head directory."""
    root = "/tmp" if sys.platform.startswith("linux") else tempfile.gettempdir()
    key = hashlib.sha256(str(head_dir).encode()).hexdigest()[:10]
    return Path(root) / f"ray_assets-{os.getuid()}-{key}"


def find_or_start(
    head_dir: Path,
    spec: HeadSpec,
    *,
    client_pid: int | None = None,
    start_timeout_s: float = START_TIMEOUT_S,
) -> tuple[HeadRecord, bool]:
    """Find the head that answers for `head_dir`, or start one; register `client_pid` with it.

    Args:
        head_dir: The head directory (see `resolve_head_dir`).
        spec: The size of the head to start when none answers.
        client_pid: A process that uses the head: the head stays up while it is alive and
            registered (see `unregister_client`).
        start_timeout_s: How long a start may take before it counts as failed.

    Returns:
        The head's record, and whether this call started it.

    Raises:
        SharedHeadError: The head did not come up; the message quotes its log.
    """
    head_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(head_dir, start_timeout_s + 2 * STOP_TIMEOUT_S):
        record = read_record(head_dir)
        started = record is None or not answers(record)
        if started:
            if record is not None:
                _log.warning(
                    f"The shared Ray head at {record.gcs_address} does not answer; "
                    "clearing it and starting a fresh one"
                )
                _stop_recorded(head_dir, record)
            record = _start(head_dir, spec, start_timeout_s)
        if client_pid is not None:
            register_client(head_dir, client_pid)
    return record, started


def answers(record: HeadRecord) -> bool:
    """Whether the recorded head is up: its supervisor lives and its GCS answers within 2 s."""
    return _alive(record.supervisor_pid) and _gcs_answers(record.gcs_address)


def read_record(head_dir: Path) -> HeadRecord | None:
    """The record in `head_dir`, whether or not its head still answers; None if there is none."""
    try:
        return HeadRecord(**json.loads((head_dir / RECORD_FILE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def stop(head_dir: Path) -> HeadRecord | None:
    """Stop the recorded head of `head_dir` (its clients lose Ray) and remove its record.

    Returns:
        The record of the head that was stopped, or None if none was recorded.

    Raises:
        SharedHeadError: Some of the head's processes outlived SIGKILL.
    """
    record = read_record(head_dir)
    if record is not None:
        _stop_recorded(head_dir, record)
    return record


def register_client(head_dir: Path, pid: int) -> None:
    """Keep the head up while process `pid` is alive, until `unregister_client`."""
    clients = head_dir / CLIENTS_DIR
    clients.mkdir(mode=0o700, exist_ok=True)
    (clients / str(pid)).write_text(datetime.now(timezone.utc).isoformat())


def unregister_client(head_dir: Path, pid: int) -> None:
    """Stop counting process `pid` as a user of the head."""
    (head_dir / CLIENTS_DIR / str(pid)).unlink(missing_ok=True)


def live_clients(head_dir: Path) -> list[int]:
    """Registered client processes that are still alive; files of dead ones are removed."""
    clients = head_dir / CLIENTS_DIR
    alive = []
    for entry in clients.iterdir() if clients.is_dir() else []:
        if entry.name.isdigit() and _alive(int(entry.name)):
            alive.append(int(entry.name))
        else:
            entry.unlink(missing_ok=True)
    return sorted(alive)


def use_token_auth_in_this_process() -> None:
    """Turn Ray's token authentication on for this process (a private Ray hook, see `_compat`)."""
    from ray_assets._compat import enable_token_auth_in_this_process

    enable_token_auth_in_this_process()


def ensure_token() -> None:
    """Create Ray's token file (mode 0600) where Ray looks for it, unless a token exists."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token").expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as token_file:
            token_file.write(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes


# --- starting -------------------------------------------------------------------------------------


def _start(head_dir: Path, spec: HeadSpec, start_timeout_s: float) -> HeadRecord:
    """Start a supervisor and wait until it has recorded a head that answers."""
    command = [
        sys.executable,
        # the file, not `-m ray_assets.local_head`: the package would load Dagster for nothing
        str(Path(__file__).resolve()),
        f"--head-dir={head_dir}",
        "serve",
        f"--num-cpus={spec.num_cpus}",
        f"--object-store-bytes={spec.object_store_bytes}",
        f"--idle-timeout-s={spec.idle_timeout_s}",
        f"--start-timeout-s={start_timeout_s}",
    ]
    if spec.num_gpus is not None:
        command.append(f"--num-gpus={spec.num_gpus}")
    if spec.include_dashboard:
        command.append("--dashboard")
    with open(head_dir / SUPERVISOR_LOG, "ab") as log:
        supervisor = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + LAUNCH_ATTEMPTS * (start_timeout_s + SETTLE_S + STOP_TIMEOUT_S)
    while time.monotonic() < deadline:
        record = read_record(head_dir)
        if record is not None and record.supervisor_pid == supervisor.pid:
            return record
        if supervisor.poll() is not None:
            raise SharedHeadError(_start_failure(head_dir, f"exited with {supervisor.returncode}"))
        time.sleep(_POLL_S)
    supervisor.terminate()
    raise SharedHeadError(
        _start_failure(
            head_dir, f"did not record a head in {LAUNCH_ATTEMPTS} attempts of {start_timeout_s}s"
        )
    )


def _start_failure(head_dir: Path, what: str) -> str:
    tails = []
    for name in (SUPERVISOR_LOG, HEAD_LOG):
        with contextlib.suppress(OSError):
            tails.append(f"--- {head_dir / name} (end) ---\n" + _tail(head_dir / name))
    return f"The shared Ray head's supervisor {what}.\n" + "\n".join(tails)


def _tail(path: Path, size: int = 3000) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read().decode(errors="replace")


# --- the supervisor ---------------------------------------------------------------------------------


def serve(head_dir: Path, spec: HeadSpec, start_timeout_s: float) -> int:
    """Run a head for `head_dir` until it is idle or told to stop; the process exit code."""
    stop_requested = []
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop_requested.append(True))
    ensure_token()
    for attempt in range(1, LAUNCH_ATTEMPTS + 1):
        head, gcs_address, dashboard_url = _launch_ray_head(head_dir, spec, attempt == 1)
        _log.info(
            f"Started `ray start` (pid {head.pid}) for {gcs_address}; waiting until it answers"
        )
        if _wait_until_ready(
            head, head_dir, gcs_address, start_timeout_s, stop_requested
        ) and _stays_up(head, SETTLE_S, stop_requested):
            break
        _stop_session(head)
        if stop_requested or attempt == LAUNCH_ATTEMPTS:
            return 1
        _log.warning(
            f"The head for {gcs_address} did not come up and stay up (attempt {attempt} of "
            f"{LAUNCH_ATTEMPTS}, see {head_dir / HEAD_LOG}); starting it again on other ports"
        )
    record = HeadRecord(
        gcs_address=gcs_address,
        supervisor_pid=os.getpid(),
        head_pid=head.pid,
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        num_cpus=spec.num_cpus,
        num_gpus=spec.num_gpus,
        object_store_bytes=spec.object_store_bytes,
        idle_timeout_s=spec.idle_timeout_s,
        dashboard_url=dashboard_url,
        ray_temp_dir=str(ray_temp_dir(head_dir)),
        log_file=str(head_dir / HEAD_LOG),
    )
    _write_record(head_dir, record)
    _log.info(f"Ray head up at {gcs_address}; stops after {spec.idle_timeout_s}s without clients")
    return _watch(head, head_dir, spec.idle_timeout_s, stop_requested)


def _launch_ray_head(
    head_dir: Path, spec: HeadSpec, fresh_log: bool = True
) -> tuple[subprocess.Popen, str, str | None]:
    gcs_port, client_server_port, agent_port, dashboard_port = _free_ports(4)
    temp_dir = ray_temp_dir(head_dir)
    # a dead head's address file: Ray writes it again once the new head is up
    (temp_dir / "ray_current_cluster").unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        f"--node-ip-address={LOOPBACK}",
        f"--port={gcs_port}",
        f"--ray-client-server-port={client_server_port}",
        f"--dashboard-agent-listen-port={agent_port}",
        "--min-worker-port=0",
        "--max-worker-port=0",
        f"--num-cpus={spec.num_cpus}",
        f"--object-store-memory={spec.object_store_bytes}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    if spec.num_gpus is not None:
        command.append(f"--num-gpus={spec.num_gpus}")
    dashboard_url = None
    if spec.include_dashboard:
        command += [
            "--include-dashboard=true",
            f"--dashboard-host={LOOPBACK}",
            f"--dashboard-port={dashboard_port}",
        ]
        dashboard_url = f"http://{LOOPBACK}:{dashboard_port}"
    else:
        command.append("--include-dashboard=false")
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep the node IP 127.0.0.1 (see above)
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)  # a head never joins another cluster
    # a retry appends: the failed attempt's reason stays readable
    with open(head_dir / HEAD_LOG, "wb" if fresh_log else "ab") as log:
        head = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own session: stopped as a whole, nothing else
        )
    return head, f"{LOOPBACK}:{gcs_port}", dashboard_url


def _wait_until_ready(
    head: subprocess.Popen, head_dir: Path, gcs_address: str, timeout_s: float, stop_requested: list
) -> bool:
    """Ray writes `ray_current_cluster` once the head's node is up; then the GCS must answer."""
    address_file = ray_temp_dir(head_dir) / "ray_current_cluster"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop_requested:
        if head.poll() is not None:
            _log.error(f"`ray start` exited with {head.returncode}; see {head_dir / HEAD_LOG}")
            return False
        if address_file.is_file() and address_file.read_text().strip() == gcs_address:
            if _gcs_answers(gcs_address):
                return True
        time.sleep(_POLL_S)
    _log.error(f"The head did not answer within {timeout_s}s, or a stop was requested")
    return False


def _stays_up(head: subprocess.Popen, seconds: float, stop_requested: list) -> bool:
    """Whether the head is still running `seconds` after it first answered."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop_requested:
        if head.poll() is not None:
            _log.error(f"`ray start` exited with {head.returncode} just after it answered")
            return False
        time.sleep(_POLL_S)
    return head.poll() is None and not stop_requested


def _watch(
    head: subprocess.Popen, head_dir: Path, idle_timeout_s: float, stop_requested: list
) -> int:
    """Keep the head while clients use it; stop it when idle, on a signal, or if it died."""
    poll_s = min(1.0, max(_POLL_S, idle_timeout_s / 10))
    last_used = time.monotonic()
    while not stop_requested:
        if head.poll() is not None:
            _log.error(f"The head exited with {head.returncode}; see {head_dir / HEAD_LOG}")
            _remove_record_if_mine(head_dir)
            _stop_session(head)
            return 1
        if live_clients(head_dir):
            last_used = time.monotonic()
        elif time.monotonic() - last_used >= idle_timeout_s:
            # under the lock: a process that is registering right now keeps the head
            with contextlib.suppress(TimeoutError), _locked(head_dir, timeout_s=1.0):
                if not live_clients(head_dir):
                    _log.info(f"No client for {idle_timeout_s}s: stopping the head")
                    _remove_record_if_mine(head_dir)
                    _stop_session(head)
                    return 0
            last_used = time.monotonic()
        time.sleep(poll_s)
    _log.info("Asked to stop: stopping the head")
    _remove_record_if_mine(head_dir)
    _stop_session(head)
    return 0


def _write_record(head_dir: Path, record: HeadRecord) -> None:
    partial = head_dir / f".{RECORD_FILE}.{os.getpid()}"
    partial.write_text(json.dumps(asdict(record), indent=2) + "\n")
    os.replace(partial, head_dir / RECORD_FILE)


def _remove_record_if_mine(head_dir: Path) -> None:
    record = read_record(head_dir)
    if record is not None and record.supervisor_pid == os.getpid():
        (head_dir / RECORD_FILE).unlink(missing_ok=True)


def _stop_session(head: subprocess.Popen) -> None:
    """SIGTERM to `ray start`, which stops its processes; SIGKILL to what is left of its session."""
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
    _wait_for_session_end(head.pid, STOP_TIMEOUT_S, reap=head)
    _kill_session(head.pid)


# --- stopping from outside --------------------------------------------------------------------------


def _stop_recorded(head_dir: Path, record: HeadRecord) -> None:
    """Stop a recorded head through its supervisor, kill what outlives it, remove the record."""
    if _alive(record.supervisor_pid) and _is_supervisor_of(record.supervisor_pid, head_dir):
        os.kill(record.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S + 5
        while _alive(record.supervisor_pid) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        if _alive(record.supervisor_pid):
            os.kill(record.supervisor_pid, signal.SIGKILL)
    _kill_session(record.head_pid)
    if read_record(head_dir) == record:
        (head_dir / RECORD_FILE).unlink(missing_ok=True)


def _is_supervisor_of(pid: int, head_dir: Path) -> bool:
    """Guards against a recycled pid: the process's command line names this head directory."""
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True  # no /proc (macOS): trust the pid
    return f"--head-dir={head_dir}" in command_line


def _kill_session(session_id: int) -> None:
    pids = _session_pids(session_id)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if not Path("/proc").is_dir():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(session_id, signal.SIGKILL)
    if not _wait_for_session_end(session_id, 5.0):
        raise SharedHeadError(
            f"Processes {_session_pids(session_id)} of the shared Ray head outlived SIGKILL"
        )


def _wait_for_session_end(
    session_id: int, timeout_s: float, reap: subprocess.Popen | None = None
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if reap is not None:
            reap.poll()
        if not _session_pids(session_id):
            return True
        time.sleep(_POLL_S)
    return False


def _session_pids(session_id: int) -> list[int]:
    """Live processes of a session: `ray start`, Ray's daemons and workers (which Ray puts in
    process groups of their own, but not in sessions of their own). Needs /proc."""
    if not Path("/proc").is_dir():
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == session_id and _alive(int(entry)):
                    pids.append(int(entry))
    return pids


# --- small parts ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(head_dir: Path, timeout_s: float) -> Iterator[None]:
    """The head directory's lock (`fcntl.flock`), waited for at most `timeout_s`."""
    path = head_dir / LOCK_FILE
    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"Waited {timeout_s:.0f}s for {path}: another process is starting or "
                        f"stopping the shared Ray head; see {head_dir / SUPERVISOR_LOG}"
                    ) from None
                time.sleep(_POLL_S / 2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _gcs_answers(gcs_address: str, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
    """gRPC's standard health check, which Ray's GCS serves without a token."""
    import grpc

    with grpc.insecure_channel(gcs_address) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            return check(b"", timeout=timeout_s) == _SERVING
        except grpc.RpcError:
            return False


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# --- command line ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`status` prints the head's record as JSON and exits 0 if the head answers, 1 if not;
    `stop` stops the head; `serve` is the supervisor, which `find_or_start` starts."""
    parser = argparse.ArgumentParser(
        prog="python -m ray_assets.local_head",
        description="The machine's shared local Ray head, used by RayResource(shared_head=True).",
    )
    parser.add_argument("--head-dir", help=f"default: ${HEAD_DIR_ENV}, else {DEFAULT_HEAD_DIR}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="print the head's record and whether it answers")
    commands.add_parser("stop", help="stop the head (its clients lose Ray) and remove its record")
    serve_parser = commands.add_parser("serve", help="internal: run the head's supervisor")
    serve_parser.add_argument("--num-cpus", type=int, required=True)
    serve_parser.add_argument("--object-store-bytes", type=int, required=True)
    serve_parser.add_argument("--num-gpus", type=int)
    serve_parser.add_argument("--dashboard", action="store_true")
    serve_parser.add_argument("--idle-timeout-s", type=float, required=True)
    serve_parser.add_argument("--start-timeout-s", type=float, required=True)
    args = parser.parse_args(argv)
    head_dir = resolve_head_dir(args.head_dir)
    if args.command == "serve":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        spec = HeadSpec(
            args.num_cpus,
            args.object_store_bytes,
            args.num_gpus,
            args.dashboard,
            args.idle_timeout_s,
        )
        return serve(head_dir, spec, args.start_timeout_s)
    if args.command == "stop":
        stopped = stop(head_dir)
        print(
            f"Stopped the shared Ray head at {stopped.gcs_address}"
            if stopped
            else f"No shared Ray head is recorded in {head_dir}"
        )
        return 0
    record = read_record(head_dir)
    running = record is not None and answers(record)
    status = {
        "head_dir": str(head_dir),
        "running": running,
        "record": asdict(record) if record else None,
        "clients": live_clients(head_dir) if running else [],
    }
    print(json.dumps(status, indent=2))
    return 0 if running else 1


if __name__ == "__main__":
    sys.exit(main())
