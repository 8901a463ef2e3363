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
    "region": ("AWS_REGION", "aws_region", "AWS_DEFAULT_REGION"),
    "endpoint_override": ("AWS_ENDPOINT_URL", "aws_endpoint_url", "AWS_ENDPOINT", "endpoint"),
}


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
