"""Google Cloud Storage for the Ray tasks: `pafs.GcsFileSystem` from the delta-rs storage options.
pyarrow takes an access token rather than a key, so a service-account or authorized-user JSON
becomes a token here, minted with google-auth and kept per process."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from ray_assets.storage.filesystem import redact_uri
from ray_assets.storage.store_options import first_set, lowered_options, refused, seconds, truthy

GCS_SCHEMES = frozenset({"gs", "gcs"})
_GCS_KEYS = {
    "service_account_path": (
        "google_service_account",
        "service_account",
        "google_service_account_path",
        "service_account_path",
    ),
    "service_account_key": ("google_service_account_key", "service_account_key"),
    "application_credentials": ("google_application_credentials", "application_credentials"),
    "base_url": ("google_base_url", "base_url"),
    "skip_signature": ("google_skip_signature", "skip_signature"),
}
_GCS_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
_GCS_CREDENTIALS: dict[str, Any] = {}
_GCS_CREDENTIALS_LOCK = threading.Lock()


def gcs_filesystem(uri: str, options: Mapping[str, str]) -> tuple[pafs.GcsFileSystem, str]:
    """The filesystem and the table root inside it (`BUCKET/PATH`)."""
    parts = urlsplit(uri)
    return _gcs_filesystem(uri, options), f"{parts.netloc}{parts.path}"


def check_gcs_options(uri: str, options: Mapping[str, str]) -> None:
    """Raise, naming the table, when the options cannot make the tasks' filesystem."""
    _gcs_endpoint(uri, _gcs_settings(uri, options))


def _gcs_settings(uri: str, options: Mapping[str, str]) -> dict[str, Any]:
    """The GCS settings object_store reads: the base URL, the service account (a key JSON inline
    or a file), an application-credentials file given as an option, and whether to sign at all.
    (`GOOGLE_APPLICATION_CREDENTIALS` in the environment is left to pyarrow's own default
    credentials, which read it as object_store does.)"""
    lowered = lowered_options(options, "google_")
    explicit = {str(k).lower(): str(v) for k, v in options.items() if v}
    inline = first_set(lowered, _GCS_KEYS["service_account_key"])
    path = first_set(lowered, _GCS_KEYS["service_account_path"])
    path = path or first_set(explicit, _GCS_KEYS["application_credentials"])
    try:
        if inline:
            account = json.loads(inline)
        elif path:
            with open(os.path.expanduser(path), encoding="utf-8") as handle:
                account = json.load(handle)
        else:
            account = None
    except (OSError, ValueError) as error:
        what = "file " + path if path and not inline else "key (storage option)"
        raise refused(
            uri, f"the Google credentials {what} could not be read as JSON ({type(error).__name__})"
        ) from None
    base_url = first_set(lowered, _GCS_KEYS["base_url"]) or (account or {}).get("gcs_base_url")
    anonymous = truthy(first_set(lowered, _GCS_KEYS["skip_signature"]) or "") or truthy(
        (account or {}).get("disable_oauth", "")
    )
    return {
        "account": account,
        "base_url": base_url,
        "anonymous": anonymous,
        "retry_timeout": lowered.get("retry_timeout"),
    }


def _gcs_endpoint(uri: str, settings: Mapping[str, Any]) -> dict[str, str]:
    """`endpoint_override` and `scheme` for a base URL (`gcs_base_url`, `google_base_url`)."""
    if not settings["base_url"]:
        return {}
    split = urlsplit(settings["base_url"])
    if not split.netloc or split.path.strip("/"):
        raise refused(
            uri,
            f"the GCS base URL {redact_uri(settings['base_url'])} must be scheme://HOST[:PORT] "
            "without a path: pyarrow's GCS filesystem takes a host and a scheme.",
        )
    return {"endpoint_override": split.netloc, "scheme": split.scheme or "https"}


def _gcs_filesystem(uri: str, options: Mapping[str, str]) -> pafs.GcsFileSystem:
    """`pafs.GcsFileSystem` for the delta-rs (object_store) GCS options. pyarrow takes an access
    token rather than a key, so a service-account or authorized-user JSON becomes a token here;
    with none, both libraries use the application default credentials."""
    settings = _gcs_settings(uri, options)
    kwargs: dict[str, Any] = dict(_gcs_endpoint(uri, settings))
    if settings["retry_timeout"]:
        kwargs["retry_time_limit"] = timedelta(seconds=seconds(settings["retry_timeout"]))
    if settings["anonymous"]:
        kwargs["anonymous"] = True
    elif settings["account"] is not None:
        token, expiry = _gcs_access_token(uri, settings["account"])
        kwargs["access_token"] = token
        kwargs["credential_token_expiration"] = expiry
    return pafs.GcsFileSystem(**kwargs)


def _gcs_access_token(uri: str, account: Mapping[str, Any]) -> tuple[str, datetime]:
    """An OAuth access token for a service-account or authorized-user JSON, minted with
    google-auth and kept per process until it nears expiry: every Ray task that opens the
    filesystem would otherwise ask the token endpoint again."""
    try:
        import google.auth
        import google.auth.transport.requests
    except ImportError:
        raise refused(
            uri,
            "a Google service-account key reaches the Ray tasks' pyarrow GCS filesystem as an "
            "access token minted with google-auth; install it (pip install google-auth).",
        ) from None
    digest = hashlib.sha256(json.dumps(account, sort_keys=True).encode()).hexdigest()
    with _GCS_CREDENTIALS_LOCK:
        credentials = _GCS_CREDENTIALS.get(digest)
        if credentials is None:
            credentials, _ = google.auth.load_credentials_from_dict(
                dict(account), scopes=[_GCS_SCOPE]
            )
            _GCS_CREDENTIALS[digest] = credentials
        if not credentials.valid:
            credentials.refresh(google.auth.transport.requests.Request())
        expiry = credentials.expiry or datetime.now(timezone.utc) + timedelta(hours=1)
        return credentials.token, expiry.replace(tzinfo=expiry.tzinfo or timezone.utc)
