"""The reference code location: a daily orders ETL built on ray_assets.

`dagster dev -w workspace.yaml`, `dg dev` and `dagster asset materialize -m definitions ...` load
`defs` (built in `definitions.location`).

`defs` is built on first access, not when the package is imported. Ray workers import the
modules that hold a pipeline's functions (`definitions.generator`, `definitions.transforms`) to
run its tasks, and Python imports this package first: building the location here made every new
worker import Dagster and every asset, about 1.3 s before its first task on a small machine,
paid again by each run's workers. Dagster finds `defs` as before: its module scan asks
`dir()` and `getattr`, which `__dir__` and `__getattr__` answer (PEP 562).
"""

from __future__ import annotations

from typing import Any

_LAZY = ("defs",)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from definitions.location import defs

        globals()["defs"] = defs  # built once: later lookups find it directly
        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
