"""Cluster resources: an existing Ray cluster and a shared table root, both from the environment.

* `RAY_ADDRESS`: the cluster to join (`head-host:6379`, or `auto` on a cluster node).
* `RAY_ASSETS_TABLE_ROOT`: where the tables live, a path every Ray node sees (a shared file
  system) or an object-store URI such as `s3://bucket/warehouse`.
* `RAY_ASSETS_CRM_URL`: the CRM database the customer dimension is read from and daily
  revenue is exported to (`postgresql://user:password@host/db`; it holds a password, so it is
  only ever read as `dagster.EnvVar` and redacted wherever it is shown).
* Object store settings: `AWS_REGION` and `AWS_ENDPOINT_URL` (an S3-compatible server) are
  passed to delta-rs; credentials are never put in config: delta-rs (driver) and pyarrow
  (Ray workers) both read `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` from each process's
  environment, so they never reach Dagster's config, logs or metadata.

Values are read when a run starts (`dagster.EnvVar`), so the code location loads even where
they are not set, and a run without them fails saying which variable is missing.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from ray_assets import DeltaIOManager, ModelArtifactIOManager, RayResource
from ray_assets.connectors.sql import SqlDatabase, SqlIOManager
from resources.local import crm_resource, landing_from_env, order_source_from_env, scoring_pool

STORAGE_OPTION_VARIABLES = {"AWS_REGION": "region", "AWS_ENDPOINT_URL": "endpoint"}


def cluster_resources() -> dict[str, Any]:
    """The cluster named by `RAY_ADDRESS` and tables under `RAY_ASSETS_TABLE_ROOT`."""
    crm = SqlDatabase(url=dg.EnvVar("RAY_ASSETS_CRM_URL"))
    return {
        "ray": RayResource(address=dg.EnvVar("RAY_ADDRESS")),
        "delta_io_manager": DeltaIOManager(
            root_uri=dg.EnvVar("RAY_ASSETS_TABLE_ROOT"),
            storage_options=storage_options_from_env(),
        ),
        "order_source": order_source_from_env(),
        "landing": landing_from_env(),
        "crm": crm_resource(crm, seed_if_missing=False),
        "sql_io_manager": SqlIOManager(database=crm),
        "model_io_manager": ModelArtifactIOManager(root_uri=dg.EnvVar("RAY_ASSETS_TABLE_ROOT")),
        "scoring": scoring_pool(),
    }


def storage_options_from_env() -> dict[str, str]:
    """Non-secret object-store settings present in the environment, as delta-rs options."""
    options = {
        option: os.environ[variable]
        for variable, option in STORAGE_OPTION_VARIABLES.items()
        if os.environ.get(variable)
    }
    if options.get("endpoint", "").startswith("http://"):
        options["allow_http"] = "true"
    return options
