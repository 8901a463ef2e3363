"""The Unity Catalog REST API client: a table by name, and temporary credentials to read it.

Standard library only (urllib); Databricks and the open-source unitycatalog server share the
API (`unitycatalog/unitycatalog` `api/all.yaml`)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import dagster as dg

from ray_assets.errors import RayAssetsError
from ray_assets.storage.filesystem import redact_uri, scrub_secrets

UNITY_CATALOG_KEY = "ray_assets/unity_catalog"
"""Definition metadata key: the Unity Catalog table an asset reads (name, host, token's source)."""

API_PATH = "/api/2.1/unity-catalog"
DEFAULT_TIMEOUT_S = 30.0

StrOrEnvVar = str  # a plain string, or a dagster.EnvVar (a str subclass) naming a variable


class UnityCatalogError(RayAssetsError):
    """Unity Catalog could not resolve a table for reading: it does not exist, is not a Delta
    table, the token was refused, the host could not be reached, or it vended credentials that
    delta-rs cannot use. The message names the asset and the table, never a token or secret.
    `status` is the HTTP status (None when no answer came), `error_code` Unity Catalog's."""

    def __init__(
        self, message: str, *, status: int | None = None, error_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


# ---------------------------------------------------------------------------- the REST client
@dataclass(frozen=True)
class TableInfo:
    """What `GET /tables/{full_name}` says about a table (the fields this module uses)."""

    full_name: str
    table_id: str
    storage_location: str | None
    data_source_format: str | None
    table_type: str | None = None
    columns: tuple[Mapping[str, Any], ...] = ()
    """Unity Catalog's ColumnInfo objects (`name`, `type_text`, `nullable`, ...), in order."""

    @property
    def column_names(self) -> list[str]:
        return [str(column.get("name")) for column in self.columns]

    def column_schema(self) -> dg.TableSchema:
        return dg.TableSchema(
            columns=[
                dg.TableColumn(
                    name=str(column.get("name")),
                    type=str(column.get("type_text") or column.get("type_name") or "unknown"),
                    description=column.get("comment"),
                )
                for column in self.columns
            ]
        )


@dataclass(frozen=True)
class TemporaryCredentials:
    """Credentials vended for one table, as delta-rs storage options (never in `repr`)."""

    kind: str
    """"aws", "azure" or "none" (the location needs none, e.g. a local path)."""
    storage_options: dict[str, str] = field(repr=False)
    expiration_time: dt.datetime | None = None
    url: str | None = None


class UnityCatalogClient:
    """The two Unity Catalog REST calls a read needs, with bearer-token auth.

    `host` is the workspace or server URL (`https://dbc-1234.cloud.databricks.com`,
    `http://localhost:8080`; https is assumed when it has no scheme). Redirects are refused, so
    the token is only ever sent to `host`.
    """

    def __init__(self, host: str, token: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not token:
            raise ValueError("UnityCatalogClient: the token is empty")
        self.host = normalize_host(host)
        self._token = token
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"UnityCatalogClient({redact_uri(self.host)!r})"

    def get_table(self, full_name: str, *, subject: str | None = None) -> TableInfo:
        """The table `catalog.schema.table` (`UnityCatalogError` when it does not exist)."""
        subject = subject or f"Unity Catalog table '{full_name}' at {redact_uri(self.host)}"
        body = self._call("GET", f"/tables/{quote(full_name, safe='')}", None, subject)
        table_id = body.get("table_id")
        if not table_id:
            raise UnityCatalogError(f"{subject}: Unity Catalog answered without a table_id")
        return TableInfo(
            full_name=str(body.get("full_name") or full_name),
            table_id=str(table_id),
            storage_location=body.get("storage_location") or None,
            data_source_format=body.get("data_source_format") or None,
            table_type=body.get("table_type") or None,
            columns=tuple(body.get("columns") or ()),
        )

    def temporary_table_credentials(
        self, table_id: str, *, operation: str = "READ", subject: str | None = None
    ) -> TemporaryCredentials:
        """Short-lived credentials for the table's storage location (`operation` READ or
        READ_WRITE), as delta-rs storage options."""
        subject = subject or f"Unity Catalog table {table_id} at {redact_uri(self.host)}"
        body = self._call(
            "POST",
            "/temporary-table-credentials",
            {"table_id": table_id, "operation": operation},
            subject,
            purpose="temporary credentials",
        )
        kind, options = credential_options(body, subject)
        try:
            expires = dt.datetime.fromtimestamp(
                int(body["expiration_time"]) / 1000, tz=dt.timezone.utc
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            expires = None
        return TemporaryCredentials(
            kind=kind,
            storage_options=options,
            expiration_time=expires,
            url=body.get("url") or None,
        )

    # ------------------------------------------------------------------ transport
    def _call(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None,
        subject: str,
        *,
        purpose: str = "the table",
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            f"{self.host}{API_PATH}{path}", data=data, headers=headers, method=method
        )
        opener = urllib.request.build_opener(_RefuseRedirects())
        host = redact_uri(self.host)
        try:
            with opener.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise self._refusal(error, subject, purpose) from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            raise UnityCatalogError(
                f"{subject}: Unity Catalog at {host} could not be reached to ask for {purpose} "
                f"({self._scrub(str(reason))}). Check the host and the network; nothing was read."
            ) from None
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise UnityCatalogError(
                f"{subject}: Unity Catalog at {host} answered {purpose} with something that is "
                f"not a JSON object ({self._scrub(raw[:120].decode(errors='replace'))!r}); is "
                "the host a Unity Catalog server?"
            )
        return body

    def _refusal(self, error: Any, subject: str, purpose: str) -> UnityCatalogError:
        host = redact_uri(self.host)
        status = int(error.code)
        try:
            body = json.loads(error.read() or b"{}")
        except (ValueError, OSError):
            body = {}
        body = body if isinstance(body, dict) else {}
        code = str(body.get("error_code") or "") or None
        said = self._scrub(str(body.get("message") or error.reason or ""))[:300]
        answer = f"HTTP {status}" + (f" {code}" if code else "") + (f": {said}" if said else "")
        if status == 404:
            message = (
                f"{subject}: the table does not exist in Unity Catalog at {host}, or the token's "
                f"principal may not see it ({answer}). Check the catalog.schema.table name."
            )
        elif status == 401:
            message = (
                f"{subject}: Unity Catalog at {host} did not accept the token ({answer}). Check "
                "the token (expired or revoked?) in the environment of the run."
            )
        elif status == 403:
            message = (
                f"{subject}: Unity Catalog at {host} refused {purpose} to the token's principal "
                f"({answer}). Reading needs SELECT on the table and USE on its catalog and "
                "schema; Databricks vends credentials only with EXTERNAL USE SCHEMA on the "
                "schema and external data access enabled on the metastore."
            )
        elif 300 <= status < 400:
            message = (
                f"{subject}: Unity Catalog at {host} answered with a redirect ({answer}); "
                "the token is not sent elsewhere. Give the final URL as the host."
            )
        else:
            message = f"{subject}: Unity Catalog at {host} failed to give {purpose} ({answer})."
        return UnityCatalogError(message, status=status, error_code=code)

    def _scrub(self, text: str) -> str:
        return scrub_secrets(text, {"token": self._token})


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx stays an HTTPError: urllib would resend the Authorization header to the new
    location, whoever it is."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def normalize_host(host: str) -> str:
    """`host` with a scheme (https when it has none) and without a trailing slash or API path."""
    host = host.strip().rstrip("/")
    if not host:
        raise ValueError("the Unity Catalog host is empty")
    if "://" not in host:
        host = f"https://{host}"
    if host.endswith(API_PATH):
        host = host[: -len(API_PATH)]
    if urlsplit(host).scheme not in ("http", "https"):
        raise ValueError(f"the Unity Catalog host must be an http(s) URL, not {redact_uri(host)}")
    return host


def credential_options(body: Mapping[str, Any], subject: str = "table") -> tuple[str, dict]:
    """The vended credentials of a `temporary-table-credentials` answer as delta-rs storage
    options: ("aws" | "azure" | "none", options).

    AWS credentials map to `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
    an Azure user delegation SAS to `AZURE_STORAGE_SAS_TOKEN`. A GCP OAuth token is refused:
    the object_store that deltalake 1.6 bundles has no option for a bearer token on GCS (only
    service-account keys), so the log read could not use it (Ray Data's own Unity Catalog
    reader refuses it for Delta tables for the same reason). No credentials at all (a location
    that needs none) gives no options.
    """
    aws = body.get("aws_temp_credentials")
    if aws:
        if not aws.get("access_key_id") or not aws.get("secret_access_key"):
            raise UnityCatalogError(
                f"{subject}: Unity Catalog vended AWS credentials without an access key id or "
                "secret access key"
            )
        options = {
            "AWS_ACCESS_KEY_ID": str(aws["access_key_id"]),
            "AWS_SECRET_ACCESS_KEY": str(aws["secret_access_key"]),
        }
        if aws.get("session_token"):
            options["AWS_SESSION_TOKEN"] = str(aws["session_token"])
        return "aws", options
    azure = body.get("azure_user_delegation_sas")
    if azure:
        sas = str(azure.get("sas_token") or "").lstrip("?")
        if not sas:
            raise UnityCatalogError(f"{subject}: Unity Catalog vended an empty Azure SAS token")
        return "azure", {"AZURE_STORAGE_SAS_TOKEN": sas}
    if body.get("gcp_oauth_token"):
        raise UnityCatalogError(
            f"{subject}: the table is on Google Cloud Storage and Unity Catalog vends a GCP "
            "OAuth token, which deltalake's object store cannot use (it accepts service-account "
            "keys only). Read it with an external_delta_table and the IO manager's "
            "google_service_account_key instead."
        )
    unknown = sorted(
        key
        for key, value in body.items()
        if value and any(word in key for word in ("credential", "token", "sas", "aad"))
    )  # r2_temp_credentials, azure_aad: kinds that no delta-rs option of ours takes
    if unknown:
        raise UnityCatalogError(
            f"{subject}: Unity Catalog vended credentials of a kind this reader does not know "
            f"({', '.join(unknown)}); it reads AWS credentials and Azure SAS tokens."
        )
    return "none", {}
