"""Where a table lives: one URI, resolved to a pyarrow filesystem for the Ray tasks.

Ray tasks write and read data files through pyarrow's filesystems; delta-rs only ever sees the
transaction log. Reading through pyarrow also avoids deltalake's scanner, whose threads abort
the interpreter at exit (see the research notes on process exit).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs

_S3_OPTION_KEYS = {
    "access_key": ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
    "secret_key": ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    "session_token": ("AWS_SESSION_TOKEN", "aws_session_token"),
    "region": ("AWS_REGION", "aws_region", "AWS_DEFAULT_REGION", "region"),
    "endpoint_override": ("AWS_ENDPOINT_URL", "aws_endpoint_url", "AWS_ENDPOINT", "endpoint"),
}


_UNSAFE_RENAME = "aws_s3_allow_unsafe_rename"
_OBJECT_STORE_DEFAULTS = {
    # object_store's own defaults retry an unreachable endpoint for minutes (10 retries within
    # 180 s, then again for every call): a run with a wrong endpoint would hang instead of
    # failing. These bound one call to seconds; set the keys to override them.
    "timeout": "120s",
    "connect_timeout": "10s",
    "max_retries": "3",
    "retry_timeout": "30s",
}
_SECRET_WORDS = ("secret", "token", "password", "sas", "key")


def object_store_options(uri: str, options: Mapping[str, str] | None) -> dict[str, str]:
    """delta-rs storage options for the table at `uri`: the user's, checked, with bounded
    timeouts for object stores.

    `AWS_S3_ALLOW_UNSAFE_RENAME` is refused: delta-rs 1.x commits on S3 with conditional writes
    (`If-None-Match`), which AWS S3 and current S3-compatible servers honour, so two writers can
    never both write one log version. The unsafe rename would let a concurrent commit silently
    replace another's.
    """
    result = dict(options or {})
    unsafe = [k for k, v in result.items() if k.lower() == _UNSAFE_RENAME and _truthy(v)]
    if unsafe:
        from ray_assets.errors import RayAssetsError

        raise RayAssetsError(
            f"table {redact_uri(uri)}: storage option {unsafe[0]} would let two concurrent "
            "commits overwrite each other's log entry (lost writes). ray_assets commits on S3 "
            "with delta-rs' conditional writes (If-None-Match), which AWS S3, MinIO and other "
            "current S3-compatible servers support; remove the option. A server without "
            "conditional writes cannot hold a table that more than one writer commits to."
        )
    if urlsplit(uri).scheme not in ("", "file"):
        lowered = {key.lower() for key in result}
        for key, value in _OBJECT_STORE_DEFAULTS.items():
            if key not in lowered:
                result[key] = value
    return result


def scrub_secrets(text: str, options: Mapping[str, str] | None) -> str:
    """`text` with the value of every secret-looking storage option replaced by `***`."""
    for key, value in (options or {}).items():
        if value and len(value) >= 4 and any(word in key.lower() for word in _SECRET_WORDS):
            if "access_key_id" in key.lower():
                continue  # an identifier, not a secret; it helps to see which key failed
            text = text.replace(value, "***")
    return text


def _seconds(text: str) -> float:
    """`"10s"`, `"500ms"`, `"2m"` or a bare number of seconds, as seconds."""
    value = str(text).strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def normalize_table_uri(uri: str) -> str:
    """An absolute local path, or the URI unchanged for object stores."""
    scheme = urlsplit(uri).scheme
    if scheme in ("", "file"):
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        return os.path.abspath(os.path.expanduser(path))
    return uri.rstrip("/")


def join_uri(root: str, *parts: str) -> str:
    """`root/part/...`, refusing parts that would climb out of `root`."""
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part:
            raise ValueError(f"unsafe path component {part!r} under {redact_uri(root)}")
    if urlsplit(root).scheme in ("", "file"):
        return os.path.join(normalize_table_uri(root), *parts)
    return posixpath.join(root.rstrip("/"), *parts)


def resolve_filesystem(
    table_uri: str, storage_options: Mapping[str, str] | None = None
) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path of the table root inside it."""
    uri = normalize_table_uri(table_uri)
    parts = urlsplit(uri)
    if parts.scheme == "":
        return pafs.LocalFileSystem(), uri
    if parts.scheme in ("s3", "s3a"):
        options = dict(storage_options or {})
        kwargs: dict[str, object] = {}
        for argument, names in _S3_OPTION_KEYS.items():
            for name in names:
                if options.get(name):
                    kwargs[argument] = options[name]
                    break
        lowered = {key.lower(): value for key, value in options.items()}
        for argument, name in (
            ("connect_timeout", "connect_timeout"),
            ("request_timeout", "timeout"),
        ):
            if lowered.get(name):
                kwargs[argument] = _seconds(lowered[name])
        if lowered.get("max_retries"):
            kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(
                max_attempts=int(lowered["max_retries"]) + 1
            )
        endpoint = str(kwargs.get("endpoint_override", ""))
        if endpoint.startswith("http://"):
            kwargs["scheme"] = "http"
        if endpoint:
            kwargs["endpoint_override"] = endpoint.split("://", 1)[-1]
        return pafs.S3FileSystem(**kwargs), f"{parts.netloc}{parts.path}"
    filesystem, path = pafs.FileSystem.from_uri(uri)
    return filesystem, path


def redact_uri(uri: str) -> str:
    """`uri` without user info or query string: safe for logs, metadata and errors."""
    parts = urlsplit(uri)
    if not parts.scheme:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
