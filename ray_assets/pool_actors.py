"""What runs inside an `ActorPool`'s actors: the user's model, behind a watchdog.

A model call that never returns (a deadlocked CUDA kernel, a stuck download) holds its actor,
and its CPU or GPU, for good: when Ray Data gives up on the pipeline (its no-progress timeout)
it only drops its handles to the actors, and Ray keeps an actor alive until its running call
ends. On a shared Ray head every later run then has a CPU less. So each actor watches its own
calls and exits when one runs longer than `batch_timeout_s`; Ray then frees its resources (or,
while the pipeline still runs, restarts it, within the pool's restart bound).

Dagster-free: Ray workers import this module to build the actors.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any


class GuardedModel:
    """Builds `model_class(**kwargs)` and times each of its calls."""

    model_class: Any = None
    batch_timeout_s: float | None = None

    def __init__(self, **kwargs: Any) -> None:
        self._model = self.model_class(**kwargs)
        self._running: dict[int, float] = {}
        if self.batch_timeout_s:
            threading.Thread(target=self._watch, name="batch watchdog", daemon=True).start()

    def __call__(self, batch: Any) -> Any:
        call = threading.get_ident()
        self._running[call] = time.monotonic()
        try:
            return self._model(batch)
        finally:
            self._running.pop(call, None)

    def _watch(self) -> None:
        limit = float(self.batch_timeout_s or 0)
        while True:
            time.sleep(min(1.0, limit / 4))
            started = min(self._running.values(), default=None)
            if started is not None and time.monotonic() - started > limit:
                print(
                    f"{self.model_class.__name__}: a batch ran longer than {limit:g} s "
                    "(ActorPool.batch_timeout_s); this actor exits to free its resources",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(1)


def guarded(model_class: type, batch_timeout_s: float | None) -> type:
    """A subclass of `GuardedModel` for `model_class`, named as it is: Ray Data names the stage
    after the class (`MapBatches(ReturnRiskScorer)`), in its stats and its errors."""
    return type(
        model_class.__name__,
        (GuardedModel,),
        {
            "model_class": model_class,
            "batch_timeout_s": batch_timeout_s,
            "__module__": GuardedModel.__module__,
            "__qualname__": model_class.__qualname__,
        },
    )
