"""Azure Blob Storage for the Ray tasks: `pafs.AzureFileSystem` from the delta-rs storage options,
so the tasks reach the same account, endpoint and credentials as the commits."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit

import pyarrow.fs as pafs

from ray_assets.storage.filesystem import redact_uri
from ray_assets.storage.store_options import first_set, lowered_options, refused, truthy

AZURE_SCHEMES = frozenset({"az", "abfs", "abfss", "adl", "azure"})

# object_store's names for each setting (its `AzureConfigKey`/`GoogleConfigKey` aliases), matched
# case-insensitively so `AZURE_STORAGE_ACCOUNT_KEY` works as in delta-rs.
_AZURE_KEYS = {
    "account_name": ("azure_storage_account_name", "account_name"),
    "account_key": (
        "azure_storage_account_key",
        "azure_storage_access_key",
        "azure_storage_master_key",
        "master_key",
        "account_key",
        "access_key",
    ),
    "sas_token": ("azure_storage_sas_key", "azure_storage_sas_token", "sas_key", "sas_token"),
    "client_id": ("azure_storage_client_id", "azure_client_id", "client_id"),
    "client_secret": ("azure_storage_client_secret", "azure_client_secret", "client_secret"),
    "tenant_id": (
        "azure_storage_tenant_id",
        "azure_storage_authority_id",
        "azure_tenant_id",
        "azure_authority_id",
        "tenant_id",
        "authority_id",
    ),
    "endpoint": ("azure_storage_endpoint", "azure_endpoint", "endpoint"),
    "use_emulator": ("azure_storage_use_emulator", "object_store_use_emulator", "use_emulator"),
    "bearer_token": ("azure_storage_token", "bearer_token", "token"),
}
_AZURE_PRINCIPAL = ("client_id", "client_secret", "tenant_id")
# Azurite's documented, public development account (what object_store's emulator mode uses).
_AZURITE_ACCOUNT = "devstoreaccount1"
_AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def azure_filesystem(uri: str, options: Mapping[str, str]) -> tuple[pafs.AzureFileSystem, str]:
    """The filesystem and the table root inside it (`CONTAINER/PATH`)."""
    parts = urlsplit(uri)
    arguments = _azure_arguments(uri, parts, options)
    return pafs.AzureFileSystem(**arguments), f"{_azure_container(parts)}{parts.path}"


def check_azure_options(uri: str, options: Mapping[str, str]) -> None:
    """Raise, naming the table, when the options cannot make the tasks' filesystem."""
    _azure_arguments(uri, urlsplit(uri), options)


def _azure_container(parts: SplitResult) -> str:
    """`az://CONTAINER/...`, or `abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/...`."""
    return parts.netloc.split("@", 1)[0] if "@" in parts.netloc else parts.netloc


def _azure_arguments(uri: str, parts: SplitResult, options: Mapping[str, str]) -> dict[str, str]:
    """`pafs.AzureFileSystem` arguments from the delta-rs (object_store) storage options, so the
    Ray tasks reach the same account, endpoint and credentials as the commits."""
    lowered = lowered_options(options, "azure_")
    emulator = truthy(first_set(lowered, _AZURE_KEYS["use_emulator"]) or "")
    host_account, suffix = _azure_host(parts)
    account = host_account or first_set(lowered, _AZURE_KEYS["account_name"])
    account = account or (_AZURITE_ACCOUNT if emulator else None)
    if not account:
        raise refused(
            uri,
            "no Azure storage account: set the storage option azure_storage_account_name, or "
            "name it in the URI (abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH).",
        )
    if first_set(lowered, _AZURE_KEYS["bearer_token"]):
        raise refused(
            uri,
            "the storage option azure_storage_token (a bearer token) cannot reach the Ray tasks' "
            "pyarrow Azure filesystem, which takes an account key, a SAS token, a service "
            "principal (client id, secret, tenant) or the default Azure credential chain; use "
            "one of those.",
        )
    kwargs: dict[str, str] = {"account_name": account}
    # object_store ignores the endpoint option in emulator mode: AZURITE_BLOB_STORAGE_URL or
    # the default Azurite address, with the account as the first path segment.
    endpoint = first_set(lowered, _AZURE_KEYS["endpoint"])
    if emulator:
        base = os.environ.get("AZURITE_BLOB_STORAGE_URL", "http://127.0.0.1:10000")
        endpoint = f"{base.rstrip('/')}/{account}"
    if endpoint:
        kwargs.update(_azure_authorities(uri, endpoint, account))
    elif suffix:
        kwargs["blob_storage_authority"] = suffix.replace(".dfs.", ".blob.", 1)
        kwargs["dfs_storage_authority"] = suffix.replace(".blob.", ".dfs.", 1)
    kwargs.update(_azure_credentials(lowered, options, emulator))
    return kwargs


def _azure_host(parts: SplitResult) -> tuple[str | None, str | None]:
    """The account and the host suffix (`.dfs.core.windows.net`) of an
    `abfss://CONTAINER@ACCOUNT.<suffix>/` URI; (None, None) for `az://CONTAINER/`."""
    if "@" not in parts.netloc or not parts.hostname or "." not in parts.hostname:
        return None, None
    host = parts.netloc.split("@", 1)[1]
    account, _, rest = host.partition(".")
    return account, f".{rest}"


def _azure_authorities(uri: str, endpoint: str, account: str) -> dict[str, str]:
    """Blob and DFS authority and scheme for an endpoint URL. pyarrow addresses an account either
    as `https://ACCOUNT<authority>` (the authority starts with a dot) or path-style as
    `http://<authority>/ACCOUNT` (Azurite), so the endpoint must be one of those two shapes."""
    split = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    host, path = split.netloc, split.path.strip("/")
    if not path and host.lower().startswith(f"{account.lower()}."):
        authority = host[len(account) :]
    elif path == account:
        authority = host
    else:
        raise refused(
            uri,
            f"the Azure endpoint {redact_uri(endpoint)} is neither https://{account}.HOST nor "
            f"http(s)://HOST/{account}, the two shapes pyarrow's Azure filesystem can address.",
        )
    dfs = authority.replace(".blob.", ".dfs.", 1)
    scheme = split.scheme or "https"
    return {
        "blob_storage_authority": authority,
        "dfs_storage_authority": dfs,
        "blob_storage_scheme": scheme,
        "dfs_storage_scheme": scheme,
    }


def _azure_credentials(
    lowered: Mapping[str, str], options: Mapping[str, str], emulator: bool
) -> dict[str, str]:
    """The first credential object_store would use that pyarrow also takes: an account key,
    then a SAS token, then a service principal (client id, secret and tenant), then a managed
    identity's client id given as an option. Anything else is left to pyarrow's default
    credential chain (environment, workload and managed identity, Azure CLI), as object_store
    falls back to its own: an `AZURE_CLIENT_ID` variable alone belongs to that chain."""
    key = first_set(lowered, _AZURE_KEYS["account_key"])
    sas = first_set(lowered, _AZURE_KEYS["sas_token"])
    if key:
        return {"account_key": key}
    if sas:
        return {"sas_token": sas.lstrip("?")}
    if emulator:
        return {"account_key": _AZURITE_KEY}
    principal = {name: first_set(lowered, _AZURE_KEYS[name]) for name in _AZURE_PRINCIPAL}
    if all(principal.values()):
        return {name: str(value) for name, value in principal.items()}
    explicit = {str(k).lower(): str(v) for k, v in options.items() if v}
    client_id = first_set(explicit, _AZURE_KEYS["client_id"])
    return {"client_id": client_id} if client_id and not principal["client_secret"] else {}
