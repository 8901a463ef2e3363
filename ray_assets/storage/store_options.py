"""Reading delta-rs (object_store) storage options the way object_store reads them: keys in
any case, over the environment's variables, with object_store's aliases; shared by the
filesystems each store kind gets (`filesystem`, `azure_filesystem`, `gcs_filesystem`)."""

from __future__ import annotations

import os
from collections.abc import Mapping


def seconds(text: str) -> float:
    """`"10s"`, `"500ms"`, `"2m"` or a bare number of seconds, as seconds."""
    value = str(text).strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def lowered_options(options: Mapping[str, str], prefix: str) -> dict[str, str]:
    """`options` with lower-case keys, over the environment's `PREFIX_*` variables: delta-rs
    reads `AZURE_*`/`GOOGLE_*` variables the same way, options winning."""
    merged = {
        name.lower(): value
        for name, value in os.environ.items()
        if name.lower().startswith(prefix) and value
    }
    merged.update({str(k).lower(): str(v) for k, v in options.items() if v not in (None, "")})
    return merged


def first_set(lowered: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The value of the first of `names` that is set."""
    for name in names:
        if lowered.get(name):
            return lowered[name]
    return None


def refused(uri: str, why: str) -> Exception:
    from ray_assets.errors import RayAssetsError
    from ray_assets.storage.filesystem import redact_uri

    return RayAssetsError(f"table {redact_uri(uri)}: {why}")
