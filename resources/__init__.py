"""Which resources the reference code location gets, per environment.

`local`: embedded Ray, tables in a local folder, a small source; needs nothing installed.
`cluster`: an existing Ray cluster and a table root (local path or object store) from the
environment. Both give the same resource keys, so the assets never change between them.
"""

from __future__ import annotations

from typing import Any

ENVIRONMENTS = ("local", "cluster")


def resources_for(environment: str) -> dict[str, Any]:
    """The resources of `environment` (one of `ENVIRONMENTS`)."""
    if environment == "local":
        from resources.local import local_resources

        return local_resources()
    if environment == "cluster":
        from resources.cluster import cluster_resources

        return cluster_resources()
    raise ValueError(
        f"RAY_ASSETS_ENV={environment!r} is not an environment of this code location; "
        f"choose one of {list(ENVIRONMENTS)}."
    )
