"""Progress of a streaming write in the Dagster run log, and Ray Data's terminal noise kept out.

A pipeline over a large partition runs for minutes inside one Dagster step, and the run log would
say nothing between "step started" and "step succeeded". Ray Data's own progress bars go to the
terminal of the process (`dagster dev`, the daemon), dozens of lines per run, where nobody who
looks at a run in the UI sees them.

So while a ray_assets write executes, an execution callback of Ray Data (registered once in the
`DataContext` by `RayResource`) logs one line at a steady cadence (`progress_interval_s`,
default 10 s) to the step's Dagster log: per stage, its tasks done, and the rows and bytes it has
produced with its rows per second (a write stage's outputs are reports, so it shows tasks only).
When the write is done, the IO manager logs what the tasks reported: rows, bytes, rows per
second and the table version. The callback learns which step's log to use from `progress_to`,
which the IO manager enters around the write in the step's thread (Ray Data calls
`before_execution_starts` in the thread that executes the dataset, then the other hooks from
its own scheduling thread).

`quiet_ray_data` turns Ray Data's progress bars off and drops its two messages that mislead on a
small cluster: "Progress bars disabled" and "The Ray cluster currently does not have any
available CPUs" (printed while warm-up tasks hold the CPUs for a moment; a pipeline that really
cannot get CPUs fails with `no_progress_timeout_s`). `RayResource(progress_bars=True)` keeps all
of it.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

INTERVAL_CONFIG = "ray_assets.progress_interval_s"
DEFAULT_INTERVAL_S = 10.0


@dataclass(frozen=True)
class ProgressSink:
    """Where one write's progress goes: a Dagster (or `logging`) log, and what it writes."""

    log: Any
    what: str


_current: contextvars.ContextVar[ProgressSink | None] = contextvars.ContextVar(
    "ray_assets_progress", default=None
)


@contextmanager
def progress_to(log: Any, what: str) -> Iterator[None]:
    """Within it, the Ray Data pipelines this thread executes report to `log`, naming `what`."""
    token = _current.set(ProgressSink(log, what) if log is not None else None)
    try:
        yield
    finally:
        _current.reset(token)


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_count(count: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= limit:
            return f"{count / limit:.1f}{suffix}"
    return f"{count:.0f}"


def install(data_context: Any, interval_s: float) -> None:
    """Register the progress callback in `data_context` (once) with its cadence. The class
    lives in `progress_callback`, a module Ray Data's workers can import by name: the
    DataContext travels to them with its callback classes."""
    from ray_assets.progress_callback import RunProgressCallback

    classes = data_context.custom_execution_callback_classes
    if RunProgressCallback not in classes:
        classes.append(RunProgressCallback)
    data_context.set_config(INTERVAL_CONFIG, interval_s)


def current_sink() -> ProgressSink | None:
    return _current.get()


@dataclass(frozen=True)
class StageProgress:
    """What one stage (physical operator) of an executing pipeline has done so far."""

    name: str
    tasks_finished: int
    tasks_submitted: int
    rows_out: int
    bytes_out: int

    @property
    def writes(self) -> bool:
        """A write stage: its outputs are the tasks' reports, not rows of data."""
        return self.name.endswith("Write")


def stages_of(executor: Any) -> list[StageProgress]:
    stages = []
    for operator in list(getattr(executor, "_topology", None) or {}):
        if operator.name == "Input":
            continue
        metrics = operator.metrics
        stages.append(
            StageProgress(
                name=operator.name,
                tasks_finished=int(metrics.num_tasks_finished or 0),
                tasks_submitted=int(metrics.num_tasks_submitted or 0),
                rows_out=int(metrics.rows_task_outputs_generated or 0),
                bytes_out=int(metrics.bytes_task_outputs_generated or 0),
            )
        )
    return stages


def progress_line(stages: list[StageProgress], seconds: float) -> str:
    """`Shuffle: 1.2M rows (45.0 MiB), 120.0k rows/s, 3/8 tasks done; Write: 2/8 tasks done`."""
    parts = []
    for stage in stages:
        done = f"{stage.tasks_finished}/{stage.tasks_submitted} tasks done"
        if stage.writes:
            parts.append(f"{stage.name}: {done}")
            continue
        rate = stage.rows_out / seconds if seconds > 0 else 0.0
        parts.append(
            f"{stage.name}: {human_count(stage.rows_out)} rows ({human_bytes(stage.bytes_out)}), "
            f"{human_count(rate)} rows/s, {done}"
        )
    return "; ".join(parts) or "starting"


def written_line(what: str, rows: int, size: int, seconds: float, version: int) -> str:
    """The line a finished write logs: what the tasks reported, not an estimate."""
    rate = rows / seconds if seconds > 0 else 0.0
    return (
        f"{what}: wrote {human_count(rows)} rows ({human_bytes(size)}) in {seconds:.1f} s, "
        f"{human_count(rate)} rows/s; table version {version}"
    )


_NOISE = (
    "Progress bars disabled",
    "The Ray cluster currently does not have any available CPUs",
)


class _DropRayDataNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in _NOISE)


_FILTER = _DropRayDataNoise()


def quiet_ray_data(data_context: Any, *, progress_bars: bool) -> None:
    """Ray Data's progress bars and per-execution INFO lines off (unless `progress_bars`), and
    its two misleading warnings dropped."""
    data_context.enable_progress_bars = progress_bars
    data_context.enable_operator_progress_bars = progress_bars
    logger = logging.getLogger("ray.data")
    if progress_bars:
        logger.removeFilter(_FILTER)
        for handler in logger.handlers:
            handler.removeFilter(_FILTER)
        return
    logger.addFilter(_FILTER)
    for handler in logger.handlers:
        handler.addFilter(_FILTER)
    if logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
