"""Resolving a Unity Catalog name for one read: where the table lives and the storage options
(the vended credentials over the IO manager's and the asset's) to read it with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

from ray_assets.storage.filesystem import redact_uri
from ray_assets.unity_catalog.client import (
    DEFAULT_TIMEOUT_S,
    StrOrEnvVar,
    TableInfo,
    TemporaryCredentials,
    UnityCatalogClient,
    UnityCatalogError,
    normalize_host,
)


@dataclass(frozen=True)
class ResolvedTable:
    """A Unity Catalog table resolved for one read: where it lives and the options to read it."""

    table: TableInfo
    table_uri: str
    storage_options: dict[str, str] = field(repr=False)
    """The IO manager's, then the asset's, then the vended credentials (the last one wins)."""
    credentials: TemporaryCredentials


@dataclass(frozen=True)
class UnityCatalogSource:
    """How to find one table: its name, the host and token (plain strings or `dg.EnvVar`s, read
    when `resolve` runs) and extra storage options (an endpoint, a region)."""

    full_name: str
    host: StrOrEnvVar
    token: StrOrEnvVar = field(repr=False)
    storage_options: Mapping[str, StrOrEnvVar] = field(default_factory=dict, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        parts = self.full_name.split(".")
        if len(parts) != 3 or not all(part.strip() for part in parts):
            raise ValueError(
                f"a Unity Catalog table is named catalog.schema.table, not {self.full_name!r}"
            )

    def describe(self) -> dict[str, str]:
        """For definition metadata: the name and where the host and token come from."""
        described = {"full_name": self.full_name, "host": _describe(self.host, redact=True)}
        described["token"] = (
            f"environment variable {self.token.env_var_name}"
            if isinstance(self.token, dg.EnvVar)
            else "given in code"
        )
        return described

    def resolve(
        self, *, asset: str | None = None, base_options: Mapping[str, str] | None = None
    ) -> ResolvedTable:
        """Ask Unity Catalog where the table lives and for read credentials (two requests)."""
        subject = f"Unity Catalog table '{self.full_name}'"
        if asset is not None:
            subject = f"Asset '{asset}' ({subject})"
        host = _value(self.host, "host", subject)
        token = _value(self.token, "token", subject)
        try:
            client = UnityCatalogClient(host, token, timeout_s=self.timeout_s)
        except ValueError as error:  # a host from the environment that is no http(s) URL
            raise UnityCatalogError(f"{subject}: {error}") from None
        subject = f"{subject} at {redact_uri(client.host)}" if asset is None else subject
        table = client.get_table(self.full_name, subject=subject)
        if (table.data_source_format or "").upper() != "DELTA":
            raise UnityCatalogError(
                f"{subject}: the table's data_source_format is "
                f"{table.data_source_format or 'not given'} ({table.table_type or 'table'}), "
                "not DELTA; unity_catalog_table reads Delta tables only."
            )
        if not table.storage_location:
            raise UnityCatalogError(
                f"{subject}: Unity Catalog gives no storage_location for the table "
                f"({table.table_type or 'table'}); a view has none to read."
            )
        credentials = client.temporary_table_credentials(table.table_id, subject=subject)
        options = dict(base_options or {})
        options.update(
            {key: _value(value, key, subject) for key, value in self.storage_options.items()}
        )
        options.update(credentials.storage_options)
        return ResolvedTable(
            table=table,
            table_uri=table.storage_location,
            storage_options=options,
            credentials=credentials,
        )


def _value(value: StrOrEnvVar, what: str, subject: str) -> str:
    if isinstance(value, dg.EnvVar):
        found = value.get_value()
        if not found:
            raise UnityCatalogError(
                f"{subject}: the {what} comes from environment variable {value.env_var_name}, "
                "which is not set (or empty) in this process."
            )
        return found
    return value


def _describe(value: StrOrEnvVar, *, redact: bool = False) -> str:
    if isinstance(value, dg.EnvVar):
        return f"${value.env_var_name}"
    return redact_uri(normalize_host(value)) if redact else value
