"""`unity_catalog_table`: the observable source asset, and the IO manager that reads it through
the `DeltaIOManager` at the resolved location."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from ray_assets.asset import DEFAULT_IO_MANAGER_KEY
from ray_assets.errors import RayAssetsError
from ray_assets.external_delta import observation, partition_versions
from ray_assets.io_manager import DeltaIOManager
from ray_assets.unity_catalog.client import DEFAULT_TIMEOUT_S, UNITY_CATALOG_KEY, StrOrEnvVar
from ray_assets.unity_catalog.source import ResolvedTable, UnityCatalogSource


def unity_catalog_table(
    name: str,
    full_name: str,
    *,
    host: StrOrEnvVar,
    token: StrOrEnvVar,
    partitions_def: dg.PartitionsDefinition | None = None,
    partition_column: str | Mapping[str, str] | None = None,
    io_manager_key: str = DEFAULT_IO_MANAGER_KEY,
    storage_options: Mapping[str, StrOrEnvVar] | None = None,
    description: str | None = None,
    group_name: str | None = None,
    key_prefix: str | list[str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dg.SourceAsset:
    """An observable source asset for the Delta table Unity Catalog names `full_name`
    (`catalog.schema.table`), like `external_delta_table` but found by name.

    Nothing is asked of Unity Catalog when the definitions load. Each observation and each read
    by a downstream asset resolves the name (`GET .../tables/{full_name}`) and asks for
    temporary read credentials (`POST .../temporary-table-credentials`), then reads the Delta
    log and files at the table's storage location with the `DeltaIOManager` at
    `io_manager_key`: its storage options, then `storage_options` (values may be `dg.EnvVar`;
    for an endpoint or a region the vended credentials do not carry), then the vended
    credentials. Observations report the table's version as data version (per partition, a
    digest of its files, when `partitions_def` is given, with `partition_column` naming the
    column(s) as in `ray_asset`), its rows and last commit.

    `host` and `token` are plain strings or `dg.EnvVar`s. The token must come from the
    environment: pass `dg.EnvVar("DATABRICKS_TOKEN")`; a literal is for tests and notebooks.
    Either way the token never reaches metadata, logs or error messages.

    Raises `UnityCatalogError` (a `RayAssetsError`) at observation or load time when the table
    does not exist, is not a Delta table, the token is refused, the host cannot be reached, or
    the credentials are of a kind delta-rs cannot use (a GCP OAuth token).
    """
    source = UnityCatalogSource(
        full_name=full_name,
        host=host,
        token=token,
        storage_options=dict(storage_options or {}),
        timeout_s=timeout_s,
    )
    metadata: dict[str, Any] = {
        UNITY_CATALOG_KEY: source.describe(),
        "dagster/table_name": full_name,
    }
    if partition_column is not None:
        metadata["partition_expr"] = (
            dict(partition_column) if isinstance(partition_column, Mapping) else partition_column
        )

    with warnings.catch_warnings():
        # io_manager_def is how this asset reads, not a choice of the caller: its beta warning
        # would only be noise in every code location that declares a table.
        warnings.filterwarnings("ignore", ".*io_manager_def.*", dg.BetaWarning)
        decorate = dg.observable_source_asset(
            name=name,
            key_prefix=key_prefix,
            partitions_def=partitions_def,
            io_manager_def=_reader_definition(source, io_manager_key),
            metadata=metadata,
            description=description
            or f"The Delta table {full_name} of Unity Catalog, resolved by name at each read.",
            group_name=group_name,
            required_resource_keys={io_manager_key},
            kinds={"deltalake", "unitycatalog"},
        )

    def observe(context: dg.AssetExecutionContext) -> Any:
        asset = context.asset_key.to_user_string()
        base = _delta_io_manager(getattr(context.resources, io_manager_key), asset, io_manager_key)
        resolved = source.resolve(asset=asset, base_options=base.storage_options)
        store = _pinned(base, resolved).store_for(context.asset_key)
        where = f"Asset '{asset}' (Unity Catalog table '{full_name}')"
        try:
            result = observation(store)
            if partitions_def is not None:
                context.log.info(
                    f"{asset}: {full_name} at version {result.metadata['delta/table_version']}, "
                    f"{result.metadata['dagster/row_count']} rows"
                )
                return partition_versions(
                    store, partitions_def, partition_column, asset, context.instance
                )
        except RayAssetsError as error:
            raise _naming(error, where) from None
        metadata = dict(result.metadata or {})
        metadata["dagster/table_name"] = full_name
        metadata["unity_catalog/table_id"] = resolved.table.table_id
        if resolved.table.columns:
            metadata["dagster/column_schema"] = resolved.table.column_schema()
        return dg.ObserveResult(data_version=result.data_version, metadata=metadata)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*io_manager_def.*", dg.BetaWarning)
        return decorate(observe)


class _PinnedDeltaIOManager(DeltaIOManager):
    """A `DeltaIOManager` whose every table is one resolved Unity Catalog table, read with the
    merged storage options: `DeltaIOManager.load_input` unchanged, on the resolved location."""

    _resolved: Any = PrivateAttr(default=None)

    def store_for(self, asset_key: dg.AssetKey) -> Any:
        return self._store()

    def store_at(self, table_uri: str) -> Any:
        return self._store()

    def _store(self) -> Any:
        from ray_assets.storage.delta_store import DeltaStore

        resolved: ResolvedTable = self._resolved
        return DeltaStore(
            resolved.table_uri,
            storage_options=resolved.storage_options,
            max_commit_attempts=self.max_commit_attempts,
            on_concurrent_write=self.on_concurrent_write,
        )


def _pinned(base: DeltaIOManager, resolved: ResolvedTable) -> _PinnedDeltaIOManager:
    fields = {name: getattr(base, name) for name in DeltaIOManager.model_fields}
    fields["storage_options"] = {}  # the secrets stay out of the config model
    pinned = _PinnedDeltaIOManager(**fields)
    pinned._resolved = resolved
    return pinned


class _UnityCatalogReader(dg.IOManager):
    """The source asset's IO manager: resolves the table at each load, then reads it like the
    `DeltaIOManager` it wraps (pruned to the input's partitions, projected to its columns)."""

    def __init__(self, source: UnityCatalogSource, base: DeltaIOManager) -> None:
        self._source = source
        self._base = base

    def load_input(self, context: dg.InputContext) -> Any:
        asset = context.asset_key.to_user_string()
        resolved = self._source.resolve(asset=asset, base_options=self._base.storage_options)
        where = f"Asset '{asset}' (Unity Catalog table '{self._source.full_name}')"
        try:
            return _pinned(self._base, resolved).load_input(context)
        except RayAssetsError as error:
            raise _naming(error, where) from None

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        raise RayAssetsError(
            f"Unity Catalog table '{self._source.full_name}' is a source: ray_assets reads it "
            "and never writes it."
        )


def _reader_definition(source: UnityCatalogSource, io_manager_key: str) -> dg.IOManagerDefinition:
    @dg.io_manager(required_resource_keys={io_manager_key})
    def unity_catalog_reader(init_context: Any) -> _UnityCatalogReader:
        base = _delta_io_manager(
            getattr(init_context.resources, io_manager_key), source.full_name, io_manager_key
        )
        return _UnityCatalogReader(source, base)

    return unity_catalog_reader


def _delta_io_manager(resource: Any, asset: str, io_manager_key: str) -> DeltaIOManager:
    if not isinstance(resource, DeltaIOManager):
        raise RayAssetsError(
            f"Asset '{asset}' reads its Unity Catalog table through resource '{io_manager_key}', "
            f"which must be a DeltaIOManager, not {type(resource).__name__}."
        )
    return resource


def _naming(error: RayAssetsError, where: str) -> RayAssetsError:
    """`error` with `where` in front (same class when it takes a message alone)."""
    if str(error).startswith(where):
        return error
    try:
        return type(error)(f"{where}: {error}")
    except TypeError:
        return error
