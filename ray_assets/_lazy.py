"""Public names a package loads on first use (PEP 562), shared by the packages that need it.

Ray workers unpickle functions by module (`ray_assets.aggregates`, `ray_assets.storage.*`,
`ray_assets.connectors.sql.reads`), which imports each parent package first; a package that
imported its public names eagerly would make every worker import Dagster (about 1 s each).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, whose public names live in the modules
    `exports` maps them to; each is imported once, on first use, and kept in the package."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        imported = importlib.import_module(module)
        # a subpackage exported under its own name (`ray_assets.checks`) is the module itself
        value = imported if module == f"{package}.{name}" else getattr(imported, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
