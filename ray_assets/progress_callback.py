"""Ray Data's execution callback that logs a write's progress (see `ray_assets.progress`).

A module of its own, imported only once Ray Data is: the class is registered in the
`DataContext`, which Ray ships to its workers, so it must be importable by name there.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray.data._internal.execution.execution_callback import ExecutionCallback  # noqa: TID253

from ray_assets.progress import (
    DEFAULT_INTERVAL_S,
    INTERVAL_CONFIG,
    ProgressSink,
    current_sink,
    progress_line,
    stages_of,
)


class RunProgressCallback(ExecutionCallback):
    """Logs the progress of a pipeline executed inside `progress_to`, a line every interval
    while it runs (the IO manager logs the finished write). Outside `progress_to` it does
    nothing."""

    def __init__(self) -> None:
        self._sink: ProgressSink | None = None
        self._started = 0.0
        self._next = 0.0
        self._interval = DEFAULT_INTERVAL_S

    def before_execution_starts(self, executor: Any) -> None:
        # called in the thread that executes the dataset: the step's, inside `progress_to`
        self._sink = current_sink()
        if self._sink is None:
            return
        context = getattr(executor, "_data_context", None)
        configured = context.get_config(INTERVAL_CONFIG, None) if context is not None else None
        self._interval = float(configured or DEFAULT_INTERVAL_S)
        self._started = time.monotonic()
        self._next = self._started + self._interval

    def on_execution_step(self, executor: Any) -> None:
        if self._sink is None:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._interval
        elapsed = now - self._started
        self._emit(
            f"{self._sink.what}: {elapsed:.0f} s, {progress_line(stages_of(executor), elapsed)}"
        )

    def after_execution_fails(self, executor: Any, error: Exception) -> None:
        """Nothing: the step's failure says why, naming the asset and the partitions."""

    def _emit(self, line: str) -> None:
        try:
            self._sink.log.info(line)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - progress must never break a pipeline
            logging.getLogger(__name__).debug("progress line not logged", exc_info=True)
