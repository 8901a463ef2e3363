"""Cluster resources: an existing Ray cluster and a shared table root, both from the environment.

* `RAY_ADDRESS`: the cluster to join (`head-host:6379`, or `auto` on a cluster node).
* `RAY_ASSETS_TABLE_ROOT`: where the tables live, a path every Ray node sees (a shared file
  system) or an object-store URI such as `s3://bucket/warehouse`.
* `RAY_ASSETS_CRM_URL`: the CRM database the customer dimension is read from and daily
  revenue is exported to (`postgresql://user:password@host/db`; it holds a password, so it is
  only ever read as `dagster.EnvVar` and redacted wherever it is shown).
* Object store settings: `AWS_REGION` and `AWS_ENDPOINT_URL` (an S3-compatible server) become
  storage options. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, when
  the code location's environment has them, become storage options as `dagster.EnvVar`s: read
  when a run starts, shown by name only, and passed to the Ray tasks through Ray's object store
  (never as task arguments), so the Ray nodes need no credentials of their own. Without them,
  delta-rs and pyarrow use each process's own chain (environment, instance role).
* `RAY_ASSETS_MODEL_ROOT`: where model files and their artifact documents live (default: the
  table root). The scoring actors read the model file with their node's own credentials, so
  on an object store the nodes need them, or the models a shared path.

Values are read when a run starts (`dagster.EnvVar`), so the code location loads even where
they are not set, and a run without them fails saying which variable is missing.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from ray_assets import DeltaIOManager, ModelArtifactIOManager, RayResource
from ray_assets.connectors.sql import SqlDatabase, SqlIOManager
from resources.local import (
    alerts_from_env,
    crm_resource,
    landing_from_env,
    order_source_from_env,
    scoring_pool,
)

STORAGE_OPTION_VARIABLES = {"AWS_REGION": "region", "AWS_ENDPOINT_URL": "endpoint"}
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


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
        "model_io_manager": ModelArtifactIOManager(
            root_uri=dg.EnvVar(
                "RAY_ASSETS_MODEL_ROOT"
                if os.environ.get("RAY_ASSETS_MODEL_ROOT")
                else "RAY_ASSETS_TABLE_ROOT"
            )
        ),
        "scoring": scoring_pool(),
        "alerts": alerts_from_env(),
    }


def storage_options_from_env() -> dict[str, Any]:
    """The object-store settings present in the environment, as delta-rs options: the plain
    ones by value, the credentials as `dagster.EnvVar` (resolved when a run starts)."""
    options: dict[str, Any] = {
        option: os.environ[variable]
        for variable, option in STORAGE_OPTION_VARIABLES.items()
        if os.environ.get(variable)
    }
    if options.get("endpoint", "").startswith("http://"):
        options["allow_http"] = "true"
    for variable in CREDENTIAL_VARIABLES:
        if os.environ.get(variable):
            options[variable] = dg.EnvVar(variable)
    return options
