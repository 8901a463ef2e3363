"""Unity Catalog tables by name (`catalog.schema.table`) as Dagster observable source assets.

`unity_catalog_table("orders", "main.sales.orders", host=dg.EnvVar("DATABRICKS_HOST"),
token=dg.EnvVar("DATABRICKS_TOKEN"))` declares a Delta table that Unity Catalog knows by name,
on Databricks or on the open-source unitycatalog server (they share the REST API). Loading the
code location asks Unity Catalog nothing. Each observation, and each read by a downstream asset,
asks it two things over its REST API (`UnityCatalogClient`, standard library only):

1. `GET {host}/api/2.1/unity-catalog/tables/{full_name}`: the table's `storage_location`,
   `data_source_format` (only `DELTA` is read), `table_id` and columns;
2. `POST {host}/api/2.1/unity-catalog/temporary-table-credentials` with
   `{"table_id": ..., "operation": "READ"}`: short-lived credentials for that location
   (`aws_temp_credentials`, `azure_user_delegation_sas` or `gcp_oauth_token`, with an
   `expiration_time`),

and then reads the table's log and files there as `external_delta_table` does. The vended
credentials become delta-rs storage options for that one read, over the storage options of the
`DeltaIOManager` at `io_manager_key` and the asset's own `storage_options` (an endpoint, a
region). They are never stored, logged or put in metadata; error messages never contain them
nor the Unity Catalog token. They are not refreshed: a downstream read whose Ray tasks run
longer than their lifetime (an hour on Databricks) fails; read fewer partitions per run.

The asset reads through an IO manager of its own (Dagster's `io_manager_def`, keyed
`<asset>__io_manager`) that wraps the `DeltaIOManager` at `io_manager_key`: its `load_input`
runs unchanged on the resolved location, so partitions are pruned and columns projected as for
any table of this project.

The token must come from the environment: pass `dg.EnvVar("DATABRICKS_TOKEN")`, read when an
observation or a read runs (never when the code location loads). A plain string is accepted for
tests and notebooks; it is kept in memory only, never written to metadata or logs.
"""

from ray_assets.unity_catalog.asset import unity_catalog_table
from ray_assets.unity_catalog.client import (
    API_PATH,
    UNITY_CATALOG_KEY,
    TableInfo,
    TemporaryCredentials,
    UnityCatalogClient,
    UnityCatalogError,
    credential_options,
    normalize_host,
)
from ray_assets.unity_catalog.source import ResolvedTable, UnityCatalogSource

__all__ = [
    "API_PATH",
    "UNITY_CATALOG_KEY",
    "ResolvedTable",
    "TableInfo",
    "TemporaryCredentials",
    "UnityCatalogClient",
    "UnityCatalogError",
    "UnityCatalogSource",
    "credential_options",
    "normalize_host",
    "unity_catalog_table",
]
