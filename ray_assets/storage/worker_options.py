"""Storage options for Ray tasks, shipped by reference so that secrets stay out of task arguments.

A datasink or datasource is pickled into every task that writes or reads a table. Holding the
storage options (an access key's secret, a SAS token) in it would put the secret in each task's
arguments, which Ray keeps in its task table and shows in its dashboard. `WorkerOptions` puts
the options in Ray's object store once, on the driver, and pickles only the reference; a task
fetches the options when it first needs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class WorkerOptions:
    """Storage options: the values on the driver, a Ray object reference in a pickled task."""

    def __init__(self, options: Mapping[str, str] | None = None, reference: Any = None) -> None:
        self._options = dict(options) if options is not None else None
        self._reference = reference

    def get(self) -> dict[str, str]:
        """The options (fetched from Ray's object store the first time a task asks)."""
        if self._options is None:
            import ray

            self._options = dict(ray.get(self._reference)) if self._reference is not None else {}
        return self._options

    def __reduce__(self) -> tuple[Any, ...]:
        options = self.get()
        if not options:
            return (WorkerOptions, ({},))
        if self._reference is None:
            import ray

            self._reference = ray.put(options)
        return (WorkerOptions, (None, self._reference))

    def __repr__(self) -> str:  # never the values
        return f"WorkerOptions({sorted(self.get())})"
