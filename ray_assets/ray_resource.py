"""`RayResource`: makes sure Ray is up for a run, and makes Ray Data fail loudly instead of silently.

One Ray per process: a Ray that is already up (a test session, a script, another resource) is
reused and left running; a Ray this resource started or connected to is shut down in this process
when the run's resources are torn down. With `shared_head=True` the run connects to the machine's
shared local head (`ray_assets.local_head`), starting it if none is up, and leaves it up for the
next run. Ray Data's defaults are tuned for throughput, not for unattended pipelines: crashed
tasks retry forever, `max_errored_blocks > 0` drops rows silently, and a stalled pipeline waits
30 minutes. The resource sets bounded, explicit values for all three.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr, field_validator, model_validator

_log = logging.getLogger("ray_assets")


class RayResource(dg.ConfigurableResource):
    """Connects a Dagster run to Ray: an embedded local Ray by default, the machine's shared local
    head with `shared_head=True`, or a cluster by `address`."""

    address: str | None = Field(
        default=None,
        description=(
            "Ray cluster to connect to: 'host:port' of a head's GCS, or 'auto' for the cluster "
            "started with `ray start` on this machine. Empty: start an embedded Ray in this "
            "process (or reuse the one that is already up), or use the shared local head "
            "(`shared_head`)."
        ),
    )
    shared_head: bool = Field(
        default=False,
        description="Connect to this machine's shared local Ray head (loopback only, token "
        "authentication), starting it if none answers: runs then skip Ray's start and stop "
        "(about 7 s each) and share its workers and object store. The head stops after "
        "`head_idle_timeout_s` without runs, or with `python -m ray_assets.local_head stop`. "
        "Off: an embedded Ray per process. Not together with `address`.",
    )
    head_idle_timeout_s: float = Field(
        default=600.0,
        description="Seconds the shared head stays up once its last run is gone; applies when "
        "this run starts the head.",
    )
    head_dir: str | None = Field(
        default=None,
        description="Directory of the shared head's record (head.json), lock, client files and "
        "logs; one head per directory. Default: $RAY_ASSETS_HEAD_DIR, else ~/.ray_assets/head.",
    )
    num_cpus: int | None = Field(
        default=None,
        description="CPUs of an embedded Ray, or of the shared head when this run starts it. "
        "Default: every core of the machine.",
    )
    num_gpus: int | None = Field(
        default=None,
        description="GPUs of an embedded Ray, or of the shared head when this run starts it. "
        "Default: what Ray detects; set N on a CPU machine to test GPU scheduling with logical "
        "GPUs.",
    )
    object_store_memory_bytes: int | None = Field(
        default=None,
        description="Object store size of an embedded Ray, or of the shared head when this run "
        "starts it. Default: 25% of RAM, at most 70% of /dev/shm's free space and at most 8 GiB.",
    )
    include_dashboard: bool = Field(
        default=False,
        description="Start Ray's dashboard with an embedded Ray, or with the shared head when this "
        "run starts it (needs ray[default]).",
    )
    warm_workers: bool = Field(
        default=True,
        description="As soon as Ray is up, start this run's Ray workers in the background (one "
        "per CPU, at most 8) with the modules a pipeline's tasks import, so that the first "
        "pipeline does not wait about 3 s for them. Ray starts workers per process, so this "
        "pays off with the shared head and clusters too.",
    )
    tune_worker_allocator: bool = Field(
        default=True,
        description="Start an embedded Ray, or the shared head when this run starts it, with "
        "Arrow's allocator set for pipeline tasks: no transparent huge pages, and freed memory "
        "kept 10 s before it goes back to the system (see `ray_assets.worker_memory`; the ETL "
        "benchmark's first execution took 1.7 s instead of 2.2-2.5 s, later ones 5% less). "
        "Variables the environment already sets are kept. Off: mimalloc's defaults.",
    )
    fast_exit: bool = Field(
        default=True,
        description="Let the process exit without Python's last full garbage collection "
        "(`gc.freeze()` in an exit hook; see `ray_assets.process_exit`): about 0.5 s saved at "
        "the end of every run process. Only objects that a reference cycle alone keeps alive at "
        "exit lose their finalizers, which Python never guaranteed.",
    )
    max_task_retries: int = Field(
        default=3,
        description="How often Ray retries a task or restarts an actor that crashed (worker or node "
        "death). Ray's default is forever, which turns a record that kills its worker into an "
        "endless loop.",
    )
    progress_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between the progress lines (rows, bytes, rows per second per "
        "stage) a running write logs to the step's Dagster log.",
    )
    progress_bars: bool = Field(
        default=False,
        description="Ray Data's own terminal progress bars and per-execution log lines. Off, "
        "they stay out of the terminal of `dagster dev` and the daemon (the run log has the "
        "progress lines instead).",
    )
    no_progress_timeout_s: float = Field(
        default=600.0,
        description="Fail a pipeline that made no progress for this many seconds (Ray's default "
        "is 1800), e.g. an actor pool holding every CPU so the read stage never runs.",
    )
    op_resource_reservation: bool = Field(
        default=False,
        description="Ray Data's per-operator resource reservation (Ray's default: on). On Ray 2.60 "
        "its budget check lags behind finished tasks and keeps CPUs idle: measured on one node, "
        "a one-stage pipeline of 64 x 0.2 s tasks took 7.2 s on 4 CPUs with it and 3.5 s "
        "without (ideal 3.2 s); with 1 s tasks, 5.6 s against 4.2 s. Off, Ray Core's CPU "
        "accounting and Ray Data's other backpressure policies still bound concurrency and "
        "queues. Turn it on for pipelines whose CPU-heavy stages must not starve one another.",
    )
    shuffle_partitions: int | None = Field(
        default=None,
        description="Hash partitions of Ray Data's joins and groupbys "
        "(`DataContext.default_hash_shuffle_parallelism`; `ray_assets.shuffle_partitions()` "
        "reads it for `Dataset.join`). Default: one per CPU of the cluster, at least 2. Ray's "
        "default of 200 is sized for big clusters: on a small one, 200 near-empty partitions "
        "cost more in scheduling than the data itself.",
    )
    target_max_block_size_bytes: int | None = Field(
        default=None,
        description="Ray Data's target block size; smaller blocks mean less memory per worker. "
        "Default: Ray's (128 MiB).",
    )

    _started_here: bool = PrivateAttr(default=False)
    _registered_with_head: Path | None = PrivateAttr(default=None)

    @field_validator("address")
    @classmethod
    def _refuse_ray_client(cls, address: str | None) -> str | None:
        """Ray Client (`ray://`) cannot run Ray Data in 2.60 ('Worker' has no 'core_worker'):
        refuse it when the resource is built, not an hour into a run."""
        if address and address.startswith("ray://"):
            raise ValueError(
                "Ray Client addresses (ray://...) cannot run Ray Data pipelines; use the head's "
                "GCS address 'host:6379' (or 'auto') from a process on the cluster."
            )
        return address or None

    @field_validator("max_task_retries")
    @classmethod
    def _bounded_retries(cls, value: int) -> int:
        """-1 would restore Ray's infinite retries, which this resource exists to prevent."""
        if value < 0:
            raise ValueError("max_task_retries must be 0 or more; infinite retries hide crashes")
        return value

    @field_validator("shuffle_partitions")
    @classmethod
    def _at_least_one_partition(cls, value: int | None) -> int | None:
        """0 partitions would leave a join nowhere to put its rows."""
        if value is not None and value < 1:
            raise ValueError("shuffle_partitions must be 1 or more (or unset: one per CPU)")
        return value

    @field_validator("head_idle_timeout_s")
    @classmethod
    def _idle_timeout_not_negative(cls, value: float) -> float:
        """A negative timeout has no meaning; 0 stops the head as soon as its last run is gone."""
        if value < 0:
            raise ValueError("head_idle_timeout_s must be 0 or more")
        return value

    @model_validator(mode="after")
    def _one_place_for_ray(self) -> RayResource:
        """`address` joins a cluster that someone else runs, `shared_head` starts or joins this
        machine's head: with both, the resource would have to guess where the run's Ray is."""
        if self.address and self.shared_head:
            raise ValueError(
                f"address={self.address!r} and shared_head=True both say where Ray is: set "
                "address to join that cluster, or shared_head=True for this machine's shared "
                "local head, not both"
            )
        return self

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.fast_exit:
            from ray_assets.process_exit import skip_final_gc_at_exit

            skip_final_gc_at_exit()
        self.ensure_started(context.log)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._started_here:
            import ray

            ray.shutdown()  # this process's Ray only: a shared head stays up for the next run
            self._started_here = False
        if self._registered_with_head is not None:
            from ray_assets import local_head

            local_head.unregister_client(self._registered_with_head, os.getpid())
            self._registered_with_head = None

    def ensure_started(self, log: Any = None) -> None:
        """Start or join Ray (once per process) and apply the DataContext settings."""
        import ray

        log = log or _log
        if not ray.is_initialized():
            if self.shared_head:
                context, where = self._join_shared_head(log), "shared local head"
            elif self.address:
                address = connectable_address(self.address)
                context, where = ray.init(address=address, log_to_driver=True), self.address
            else:
                context, where = self._start_embedded(), "embedded"
            self._started_here = True
            if self.warm_workers:
                from ray_assets.worker_warmup import start_ray_data_actors, start_warm_workers

                start_warm_workers()  # not awaited: the tasks run while the run starts
                start_ray_data_actors()
            dashboard = getattr(context, "dashboard_url", None)
            if dashboard:
                log.info(f"Ray ({where}) is up; dashboard: http://{dashboard}")
            else:
                log.info(f"Ray ({where}) is up; no dashboard")
        self.configure_data_context()

    def _start_embedded(self) -> Any:
        """This process's own Ray: reachable from this machine only (every server on loopback,
        Ray's token authentication on, the dashboard, when asked for, on 127.0.0.1)."""
        import ray

        from ray_assets._compat import loopback_only_local_ray

        with loopback_only_local_ray(), self._allocator_env():
            return ray.init(
                address="local",  # never join a stale `ray_current_cluster` by accident
                num_cpus=self.num_cpus or os.cpu_count(),
                num_gpus=self.num_gpus,
                object_store_memory=self.object_store_memory_bytes or default_object_store_bytes(),
                include_dashboard=self.include_dashboard,
                dashboard_host="127.0.0.1",
                log_to_driver=True,
            )

    def _join_shared_head(self, log: Any) -> Any:
        """Find or start the machine's shared head, register this process with it, connect."""
        import ray

        from ray_assets import local_head

        head_dir = local_head.resolve_head_dir(self.head_dir)
        spec = local_head.HeadSpec(
            num_cpus=self.num_cpus or os.cpu_count() or 1,
            object_store_bytes=self.object_store_memory_bytes or default_object_store_bytes(),
            num_gpus=self.num_gpus,
            include_dashboard=self.include_dashboard,
            idle_timeout_s=self.head_idle_timeout_s,
        )
        began = time.perf_counter()
        with self._allocator_env():  # the head's supervisor, and so its workers, inherit it
            record, started = local_head.find_or_start(head_dir, spec, client_pid=os.getpid())
        found = time.perf_counter()
        try:
            local_head.use_token_auth_in_this_process()
            context = ray.init(address=record.connect_address, log_to_driver=True)
        except BaseException:
            local_head.unregister_client(head_dir, os.getpid())
            raise
        self._registered_with_head = head_dir
        log.info(
            f"Shared local Ray head at {record.gcs_address} ({record.num_cpus} CPUs, "
            f"{record.object_store_bytes / 1024**2:.0f} MiB object store, record "
            f"{head_dir / local_head.RECORD_FILE}): {'started' if started else 'found'} in "
            f"{found - began:.2f}s, connected in {time.perf_counter() - found:.2f}s"
        )
        return context

    def _allocator_env(self) -> contextlib.AbstractContextManager:
        """The worker allocator settings for the Ray processes started within it, if asked."""
        if not self.tune_worker_allocator:
            return contextlib.nullcontext()
        from ray_assets.worker_memory import allocator_env_for_started_processes

        return allocator_env_for_started_processes()

    def configure_data_context(self) -> None:
        """Apply the resource's safety settings to Ray Data's DataContext of this process."""
        from ray.data import DataContext

        data_context = DataContext.get_current()
        data_context.max_errored_blocks = 0
        data_context.execution_no_progress_timeout_s = self.no_progress_timeout_s
        data_context.set_config("ray_assets.max_task_retries", self.max_task_retries)
        data_context.op_resource_reservation_enabled = self.op_resource_reservation
        data_context.default_hash_shuffle_parallelism = (
            self.shuffle_partitions or cluster_shuffle_partitions()
        )
        if self.target_max_block_size_bytes:
            data_context.target_max_block_size = self.target_max_block_size_bytes
        from ray_assets import progress

        progress.quiet_ray_data(data_context, progress_bars=self.progress_bars)
        progress.install(data_context, self.progress_interval_s)


def cluster_shuffle_partitions() -> int:
    """One hash partition per CPU of the cluster Ray is connected to, at least 2."""
    from ray_assets.cluster import cluster_cpus

    return max(2, cluster_cpus())


def default_object_store_bytes() -> int:
    """An object store that fits this machine: 25% of RAM, within /dev/shm, at most 8 GiB."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    size = min(total // 4, 8 * 1024**3)
    if os.path.isdir("/dev/shm"):
        size = min(size, int(shutil.disk_usage("/dev/shm").free * 0.7))
    return max(size, 256 * 1024**2)


def connectable_address(address: str) -> str:
    """`address` in a form `ray.init` connects to as given. On Linux Ray replaces a loopback host
    (`127.0.0.1`, `localhost`) with the machine's routable IP before connecting, where a Ray
    that listens on loopback only (an embedded Ray, the shared head) cannot be reached; the
    IPv4-mapped form `[::ffff:127.0.0.1]` reaches the same listener and Ray keeps it."""
    host, separator, port = address.rpartition(":")
    if separator and host in ("127.0.0.1", "localhost") and port.isdigit():
        return f"[::ffff:127.0.0.1]:{port}"
    return address
