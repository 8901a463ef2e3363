"""Where a table lives: one URI, resolved to a pyarrow filesystem for the Ray tasks.

Ray tasks write and read data files through pyarrow's filesystems; delta-rs only ever sees the
transaction log. Reading through pyarrow also avoids deltalake's scanner, whose threads abort
the interpreter at exit (see the research notes on process exit).
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs

from ray_assets.storage.store_options import seconds, truthy

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
# Inside a Google service-account or authorized-user JSON (itself a storage option's value).
_SECRET_JSON_FIELDS = ("private_key", "private_key_id", "client_secret", "refresh_token")


def object_store_options(uri: str, options: Mapping[str, str] | None) -> dict[str, str]:
    """delta-rs storage options for the table at `uri`: the user's, checked, with bounded
    timeouts for object stores.

    `AWS_S3_ALLOW_UNSAFE_RENAME` is refused: delta-rs 1.x commits on S3 with conditional writes
    (`If-None-Match`), which AWS S3 and current S3-compatible servers honour, so two writers can
    never both write one log version. The unsafe rename would let a concurrent commit silently
    replace another's.
    """
    result = dict(options or {})
    unsafe = [k for k, v in result.items() if k.lower() == _UNSAFE_RENAME and truthy(v)]
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
    _refuse_unmappable(uri, result)
    return result


def _refuse_unmappable(uri: str, options: Mapping[str, str]) -> None:
    """Raise now, naming the table, when the Ray tasks' pyarrow filesystem could not be made from
    `options` (say an Azure bearer token): failing in the first write task would be later and
    less clear, after delta-rs had already accepted the same options."""
    from ray_assets.storage.azure_filesystem import AZURE_SCHEMES, check_azure_options
    from ray_assets.storage.gcs_filesystem import GCS_SCHEMES, check_gcs_options

    scheme = urlsplit(uri).scheme
    if scheme in AZURE_SCHEMES:
        check_azure_options(uri, options)
    elif scheme in GCS_SCHEMES:
        check_gcs_options(uri, options)


def scrub_secrets(text: str, options: Mapping[str, str] | None) -> str:
    """`text` with the value of every secret-looking storage option replaced by `***`."""
    for key, value in (options or {}).items():
        if value and len(value) >= 4 and any(word in key.lower() for word in _SECRET_WORDS):
            if "access_key_id" in key.lower():
                continue  # an identifier, not a secret; it helps to see which key failed
            for secret in (*_json_secrets(value), value):
                text = text.replace(secret, "***")
    return text


def _json_secrets(value: str) -> list[str]:
    """The secret fields of a credentials JSON given inline (a Google service-account key): an
    error quoting the private key alone would not contain the whole option value."""
    if not value.lstrip().startswith("{"):
        return []
    try:
        fields = json.loads(value)
    except ValueError:
        return []
    if not isinstance(fields, dict):
        return []
    return [
        str(fields[name])
        for name in _SECRET_JSON_FIELDS
        if fields.get(name) and len(str(fields[name])) >= 4
    ]


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
                kwargs[argument] = seconds(lowered[name])
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
    from ray_assets.storage.azure_filesystem import AZURE_SCHEMES, azure_filesystem
    from ray_assets.storage.gcs_filesystem import GCS_SCHEMES, gcs_filesystem

    if parts.scheme in AZURE_SCHEMES:
        return azure_filesystem(uri, storage_options or {})
    if parts.scheme in GCS_SCHEMES:
        return gcs_filesystem(uri, storage_options or {})
    filesystem, path = pafs.FileSystem.from_uri(uri)
    return filesystem, path


def redact_uri(uri: str) -> str:
    """`uri` without credentials in its user info or query string: safe for logs, metadata and
    errors. The user part of `abfs(s)://CONTAINER@ACCOUNT...` names the container, not a
    person, and stays (without a password)."""
    parts = urlsplit(uri)
    if not parts.scheme:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.scheme in ("abfs", "abfss") and parts.username and parts.password is None:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def unreadable_store_error(
    table_uri: str, storage_options: Mapping[str, str] | None, error: BaseException
) -> Exception:
    """The `ObjectStoreError` of a store that failed before anything was read or written (no
    bucket, refused, unreachable): it names the table, and the cause without secrets."""
    from ray_assets.errors import ObjectStoreError

    return ObjectStoreError(
        f"table {redact_uri(table_uri)}: the object store could not be read, so nothing was read "
        "or written. Check the bucket, the endpoint and the credentials. Cause: "
        + scrub_secrets(_first_lines(str(error)), storage_options)
    )


def _first_lines(text: str, lines: int = 6) -> str:
    """An error chain (delta-rs writes one cause per line, with terminal colours) as one short
    line."""
    import re

    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    parts = [part.strip(" ↳") for part in plain.splitlines() if part.strip(" ↳")]
    return " <- ".join(parts[:lines])
