"""The shared local Ray head: one head per head directory, found by every later run, stopped when
idle or on demand, reachable from this machine only and only with its token.

Heads run in processes of their own and Ray drivers in subprocesses, so the suite's in-process Ray
(`ray_session`) is never touched. Each test has its own head directory and token, and whatever its
head left running is killed at the end, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from ray_assets import RayResource, local_head
from ray_assets.local_head import HeadRecord, HeadSpec
from ray_assets.worker_memory import WORKER_ALLOCATOR_ENV
from tests.conftest import bare_ray_driver

REPO = Path(__file__).parent.parent
SMALL = HeadSpec(num_cpus=1, object_store_bytes=128 * 1024**2, idle_timeout_s=600)

# A Dagster run in a fresh process, importing `ray` before the resource as run code does.
DRIVER = textwrap.dedent(
    """
    import json, os, sys, time
    import ray
    import dagster as dg
    from ray_assets import RayResource

    seen = {}

    @dg.asset
    def probe(context: dg.AssetExecutionContext, ray_resource: RayResource) -> None:
        seen["gcs_address"] = ray.get_runtime_context().gcs_address
        seen["cpus"] = ray.cluster_resources().get("CPU")
        seen["object_store_bytes"] = ray.cluster_resources().get("object_store_memory")
        seen["task_pid"] = ray.get(ray.remote(lambda: os.getpid()).remote())
        seen["worker_allocator"] = ray.get(ray.remote(
            lambda: {k: v for k, v in os.environ.items() if k.startswith("MIMALLOC_")}).remote())

    resource = RayResource(shared_head=True, head_dir=sys.argv[1], head_idle_timeout_s=300,
                           num_cpus=1, object_store_memory_bytes=128 * 1024**2)
    success = dg.materialize([probe], resources={"ray_resource": resource}).success
    print("RESULT " + json.dumps({**seen, "success": success, "after": ray.is_initialized()}))
    """
)

# Seconds from a fresh process to a Ray it can use and back, through RayResource: with
# {"num_cpus": 1, "object_store_memory_bytes": 134217728} instead, the same for an embedded Ray.
TIMED_START = textwrap.dedent(
    """
    import json, sys, time
    began = time.perf_counter()
    import ray, ray.data  # as run code does, before the resource is set up
    from ray_assets import RayResource
    imported = time.perf_counter()
    resource = RayResource(**json.loads(sys.argv[1]))
    resource.ensure_started()
    up = time.perf_counter()
    ray.get(ray.remote(lambda: 1).remote())
    first_task = time.perf_counter()
    resource.teardown_after_execution(None)
    down = time.perf_counter()
    print("SECONDS " + json.dumps({"import": imported - began, "up": up - imported,
          "first_task": first_task - up, "down": down - first_task, "total": down - began}))
    """
)


@pytest.fixture
def head_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A head directory and a token of the test's own; every process of its heads ends with it."""
    _own_token(monkeypatch, tmp_path)
    directory = tmp_path / "head"
    try:
        yield directory
    finally:
        _stop_everything(directory)


@pytest.fixture(scope="module")
def warm_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, HeadRecord]]:
    """A head that is already up, for the tests that only connect to it."""
    root = tmp_path_factory.mktemp("warm")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _own_token(monkeypatch, root)
        directory = root / "head"
        try:
            record, _ = local_head.find_or_start(directory, SMALL)
            yield directory, record
        finally:
            _stop_everything(directory)


@pytest.mark.slow
def test_two_runs_started_at_once_share_one_head(head_dir: Path) -> None:
    drivers = [_start_driver(head_dir) for _ in range(2)]
    outputs = [driver.communicate(timeout=240) for driver in drivers]
    results = [_result(stdout, stderr) for stdout, stderr in outputs]

    record = local_head.read_record(head_dir)
    assert [r["success"] for r in results] == [True, True]
    assert {r["gcs_address"] for r in results} == {record.connect_address}
    assert sorted(p.name for p in head_dir.glob("*.json")) == ["head.json"]
    assert len(_head_processes(head_dir, "gcs_server")) == 1
    assert len(_supervisors(head_dir)) == 1
    logs = "".join(stderr for _, stderr in outputs)
    assert logs.count("): started in") == 1 and logs.count("): found in") == 1
    # sized by the resource that started it
    assert results[0]["cpus"] == 1 and results[0]["object_store_bytes"] == 128 * 1024**2
    # its workers run with the allocator settings of ray_assets.worker_memory
    assert [r["worker_allocator"] for r in results] == [dict(WORKER_ALLOCATOR_ENV)] * 2
    assert record.idle_timeout_s == 300
    # each run disconnected and unregistered at teardown; the head stays up for the next run
    assert [r["after"] for r in results] == [False, False]
    assert local_head.live_clients(head_dir) == []
    assert local_head.answers(record)


@pytest.mark.slow
def test_a_stale_record_is_replaced_by_a_fresh_head(head_dir: Path) -> None:
    stale, _ = local_head.find_or_start(head_dir, SMALL)
    _sigkill_head(stale)
    assert local_head.read_record(head_dir) == stale  # left behind, like Ray's address file
    assert (Path(stale.ray_temp_dir) / "ray_current_cluster").is_file()

    began = time.monotonic()
    driver = _start_driver(head_dir)
    result = _result(*driver.communicate(timeout=240))
    recovered_in = time.monotonic() - began

    fresh = local_head.read_record(head_dir)
    assert result["success"]
    assert fresh.supervisor_pid != stale.supervisor_pid
    assert result["gcs_address"] == fresh.connect_address != stale.connect_address
    assert recovered_in < 120, recovered_in


@pytest.mark.slow
def test_the_head_stops_by_itself_once_its_last_client_is_gone(head_dir: Path) -> None:
    client = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE)
    try:
        record, _ = local_head.find_or_start(
            head_dir, replace(SMALL, idle_timeout_s=1), client_pid=client.pid
        )
        # a living client keeps it up for several idle timeouts
        _observe_for(3.0, lambda: local_head.answers(record))
    finally:
        client.communicate(b"\n", timeout=10)

    _wait_until(lambda: local_head.read_record(head_dir) is None, timeout_s=60)
    _wait_until(lambda: not _head_processes(head_dir) and not _supervisors(head_dir), 30)


@pytest.mark.slow
def test_a_head_that_loses_a_port_while_starting_is_started_again(
    head_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ray start` binds the ports picked for it seconds later; a process that takes one in
    between makes it exit. Here the first attempt's Ray Client port is taken by a listener."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind((local_head.LOOPBACK, 0))
    taken.listen()
    gcs, _, agent, dashboard = local_head._free_ports(4)
    taken_port = taken.getsockname()[1]
    picks = iter([[gcs, taken_port, agent, dashboard]])  # Ray Client's port
    real_free_ports = local_head._free_ports
    monkeypatch.setattr(
        local_head, "_free_ports", lambda count: next(picks, None) or real_free_ports(count)
    )
    head_dir.mkdir(parents=True)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    records: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = records.append
    logger = logging.getLogger("ray_assets.local_head")
    level = logger.level
    logger.addHandler(catcher)
    logger.setLevel(logging.INFO)
    try:
        # in this process: no clients, so the head stops after its 1 s idle timeout
        code = local_head.serve(head_dir, replace(SMALL, idle_timeout_s=1), start_timeout_s=60)
    finally:
        taken.close()
        logger.removeHandler(catcher)
        logger.setLevel(level)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    assert code == 0
    messages = [record.getMessage() for record in records]
    assert any("(attempt 1 of 3" in m and "starting it again on other ports" in m for m in messages)
    assert sum(m.startswith("Ray head up at") for m in messages) == 1
    # the head log keeps the failed attempt's reason before the second attempt's start
    log = (head_dir / local_head.HEAD_LOG).read_text()
    assert f"Failed to bind to address 127.0.0.1:{taken_port}" in log
    assert "Ray runtime started" in log[log.index("Failed to bind") :]
    assert local_head.read_record(head_dir) is None  # recorded, then removed when idle
    assert not _head_processes(head_dir)


@pytest.mark.slow
def test_the_stop_command_stops_the_head_on_demand(head_dir: Path) -> None:
    record, _ = local_head.find_or_start(head_dir, SMALL)
    assert local_head.main([f"--head-dir={head_dir}", "status"]) == 0

    stopped = _command(head_dir, "stop")

    assert stopped.returncode == 0, stopped.stderr
    assert f"Stopped the shared Ray head at {record.gcs_address}" in stopped.stdout
    assert local_head.read_record(head_dir) is None
    assert not _head_processes(head_dir) and not _supervisors(head_dir)
    assert local_head.main([f"--head-dir={head_dir}", "status"]) == 1


@pytest.mark.slow
def test_the_head_listens_on_loopback_only(warm_head: tuple[Path, HeadRecord]) -> None:
    directory, _ = warm_head
    listening = {
        connection.laddr.ip
        for process in _head_processes(directory)
        for connection in process.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    }
    assert listening and listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening


@pytest.mark.slow
def test_the_head_refuses_a_driver_without_its_token(warm_head: tuple[Path, HeadRecord]) -> None:
    _, record = warm_head
    token = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).read_text()

    without_token = _connect(record, {"RAY_AUTH_MODE": "disabled"})
    wrong_token = _connect(record, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64})
    right_token = _connect(record, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})

    for refused in (without_token, wrong_token):
        assert refused.returncode != 0
        assert "Authentication token is missing or incorrect" in refused.stderr
    assert right_token.returncode == 0, right_token.stderr[-3000:]


@pytest.mark.slow
def test_a_later_run_joins_the_warm_head_instead_of_starting_ray(
    warm_head: tuple[Path, HeadRecord],
) -> None:
    """Prints the seconds from a fresh process to a usable Ray and back (with -s)."""
    directory, record = warm_head

    seconds = _timed_start({"shared_head": True, "head_dir": str(directory), "num_cpus": 1})

    assert local_head.read_record(directory) == record  # joined, not restarted
    print("warm shared head: " + ", ".join(f"{k} {v:.2f}s" for k, v in seconds.items()))


def test_address_and_shared_head_are_refused_together() -> None:
    with pytest.raises(Exception, match="both say where Ray is"):
        RayResource(address="10.0.0.5:6379", shared_head=True)
    assert RayResource(shared_head=True).address is None
    assert RayResource().shared_head is False  # embedded stays the default


def test_a_negative_head_idle_timeout_is_refused() -> None:
    with pytest.raises(Exception, match="head_idle_timeout_s must be 0 or more"):
        RayResource(shared_head=True, head_idle_timeout_s=-1)


def test_the_head_dir_comes_from_the_resource_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(local_head.HEAD_DIR_ENV, raising=False)
    assert local_head.resolve_head_dir() == Path.home() / ".ray_assets" / "head"
    monkeypatch.setenv(local_head.HEAD_DIR_ENV, str(tmp_path / "from_env"))
    assert local_head.resolve_head_dir() == tmp_path / "from_env"
    assert local_head.resolve_head_dir(str(tmp_path / "configured")) == tmp_path / "configured"


# --- helpers ---------------------------------------------------------------------------------------


def _own_token(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Heads and drivers started from here use a token in `directory`, never ~/.ray/auth_token;
    drivers turn token mode on themselves, as a run process does."""
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(directory / "auth_token"))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS", local_head.HEAD_DIR_ENV):
        monkeypatch.delenv(name, raising=False)


def _start_driver(head_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(head_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def _result(stdout: str, stderr: str) -> dict:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise AssertionError(f"the driver printed no result:\n{stderr[-4000:]}")


def _timed_start(resource_config: dict) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, "-c", TIMED_START, json.dumps(resource_config)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(x for x in completed.stdout.splitlines() if x.startswith("SECONDS "))
    return json.loads(line.removeprefix("SECONDS "))


def _connect(record: HeadRecord, env: dict[str, str]) -> subprocess.CompletedProcess:
    return bare_ray_driver(record.connect_address, env)


def _command(head_dir: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ray_assets.local_head", f"--head-dir={head_dir}", command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def _head_processes(head_dir: Path, name: str | None = None) -> list[psutil.Process]:
    """Processes of heads of `head_dir`: those in the session of a process whose command line
    names the head's Ray temp dir (workers rename themselves, but stay in that session)."""
    temp_dir = str(local_head.ray_temp_dir(head_dir))
    sessions = {
        os.getsid(process.pid)
        for process in _processes()
        if temp_dir in " ".join(process.info["cmdline"] or [])
    }
    return [
        process
        for process in _processes()
        if _session(process) in sessions and (name is None or process.info["name"] == name)
    ]


def _supervisors(head_dir: Path) -> list[psutil.Process]:
    mark = f"--head-dir={head_dir}"
    return [
        p
        for p in _processes()
        if mark in (p.info["cmdline"] or []) and "serve" in p.info["cmdline"]
    ]


def _processes() -> list[psutil.Process]:
    alive = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE:
            alive.append(process)
    return alive


def _session(process: psutil.Process) -> int | None:
    try:
        return os.getsid(process.pid)
    except OSError:
        return None


def _sigkill_head(record: HeadRecord) -> None:
    """The head dies without any cleanup: supervisor and every process of the head's session."""
    os.kill(record.supervisor_pid, signal.SIGKILL)
    victims = [p for p in _processes() if _session(p) == record.head_pid]
    for process in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(victims, timeout=30)
    _wait_until(lambda: not local_head._alive(record.supervisor_pid), timeout_s=30)


def _stop_everything(head_dir: Path) -> None:
    """Stop the recorded head, then kill any process left from heads of `head_dir`."""
    with contextlib.suppress(Exception):
        local_head.stop(head_dir)
    own_session = os.getsid(0)
    leftovers = {_session(p) for p in _head_processes(head_dir) + _supervisors(head_dir)}
    leftovers.discard(own_session)
    victims = [p for p in _processes() if _session(p) in leftovers]
    for process in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(victims, timeout=30)
    shutil.rmtree(local_head.ray_temp_dir(head_dir), ignore_errors=True)


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout_s}s"
        time.sleep(0.2)


def _observe_for(seconds: float, condition: Callable[[], bool]) -> None:
    """`condition` holds at every look during `seconds` (a window to watch, not a wait for an
    event: what is checked is that nothing happens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition()
        time.sleep(0.2)
