"""Local resources: the machine's shared local Ray head, Delta tables under a local folder.

Every run process (the demo, the CLI, `dagster dev`'s and the daemon's runs) joins one Ray head
for the machine, started by the first run that needs it and stopped after 10 idle minutes
(`python -m ray_assets.local_head stop` stops it now): a run connects in a fraction of a second
instead of starting and stopping its own Ray. A process whose Ray is already up (a test
session, a notebook) keeps using it.

`RAY_ASSETS_TABLE_ROOT` moves the tables (default `data/` under the working directory),
`RAY_ASSETS_ROWS_PER_DAY` sizes the generated orders (default small enough for a laptop demo),
`RAY_ASSETS_LANDING_DIR` is where order exports land (default `landing/`) and
`RAY_ASSETS_CRM_URL` names the CRM database (default: the SQLite file `crm.db` beside the tables,
filled from the generator on first use). Failed runs are alerted in the log and, when
`RAY_ASSETS_ALERT_WEBHOOK_URL` is set, to that webhook. The return-risk model's file and its artifact
document live under `models/` beside the tables; it is scored in an `ActorPool` on GPUs when
the Ray cluster has them, on CPU otherwise.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import dagster as dg

from ray_assets import ActorPool, AlertSink, DeltaIOManager, ModelArtifactIOManager, RayResource
from ray_assets.connectors.sql import SqlDatabase, SqlIOManager

if TYPE_CHECKING:
    from definitions.landing import LandingFolder
    from definitions.sources import OrderSource

DEFAULT_TABLE_ROOT = "data"


def local_resources(table_root: str | None = None) -> dict[str, Any]:
    """The shared local head, tables under `table_root` (default: `$RAY_ASSETS_TABLE_ROOT` or `data/`)."""
    root = table_root or os.environ.get("RAY_ASSETS_TABLE_ROOT") or DEFAULT_TABLE_ROOT
    crm = crm_database(root)
    return {
        "ray": RayResource(shared_head=True),
        "delta_io_manager": DeltaIOManager(root_uri=root),
        "order_source": order_source_from_env(),
        "landing": landing_from_env(),
        "crm": crm_resource(crm, seed_if_missing=True),
        "sql_io_manager": SqlIOManager(database=crm),
        "model_io_manager": ModelArtifactIOManager(root_uri=root),
        "scoring": scoring_pool(),
        "alerts": alerts_from_env(),
    }


def alerts_from_env() -> AlertSink:
    """Failed runs go to the log, and to `$RAY_ASSETS_ALERT_WEBHOOK_URL` when set (a secret:
    read through `dg.EnvVar`, so it is never in the run's config); run links point at
    `$RAY_ASSETS_DAGSTER_URL` (default: `dagster dev`'s address)."""
    return AlertSink(
        webhook_url=dg.EnvVar("RAY_ASSETS_ALERT_WEBHOOK_URL")
        if os.environ.get("RAY_ASSETS_ALERT_WEBHOOK_URL")
        else None,
        dagster_url=os.environ.get("RAY_ASSETS_DAGSTER_URL", "http://127.0.0.1:3000"),
    )


def scoring_pool() -> ActorPool:
    """Two actors per GPU when the cluster has GPUs, else CPU actors that leave one CPU to the
    read and write stages."""
    return ActorPool(gpus_per_actor=0.5, fallback="cpu", batch_size=8_192)


def crm_database(table_root: str) -> SqlDatabase:
    """`$RAY_ASSETS_CRM_URL`, or a SQLite file beside the tables (an absolute path: Ray's tasks
    on the shared head run in the directory of the process that started it)."""
    url = os.environ.get("RAY_ASSETS_CRM_URL")
    if not url:
        url = f"sqlite:///{os.path.abspath(os.path.join(table_root, 'crm.db'))}"
    return SqlDatabase(url=url)


def crm_resource(database: SqlDatabase, *, seed_if_missing: bool) -> Any:
    from definitions.crm import Crm

    return Crm(database=database, seed_if_missing=seed_if_missing)


def landing_from_env() -> LandingFolder:
    """The landing folder at `$RAY_ASSETS_LANDING_DIR` (default `landing/`)."""
    from definitions.landing import DEFAULT_LANDING_DIR, LandingFolder

    return LandingFolder(path=os.environ.get("RAY_ASSETS_LANDING_DIR") or DEFAULT_LANDING_DIR)


def order_source_from_env() -> OrderSource:
    """The source sized by `RAY_ASSETS_ROWS_PER_DAY` when it is set, with the broken day
    `RAY_ASSETS_BAD_ROWS_DAY` names (none by default)."""
    # Imported here, not at the top: `definitions` imports `resources` to build its Definitions,
    # so a module-level import of `definitions.sources` would make `import resources.local`
    # (first) run `definitions/__init__` while this module is half-initialised.
    from definitions.sources import OrderSource

    rows = os.environ.get("RAY_ASSETS_ROWS_PER_DAY")
    bad_day = os.environ.get("RAY_ASSETS_BAD_ROWS_DAY", "")
    if rows:
        return OrderSource(rows_per_day=int(rows), bad_rows_day=bad_day)
    return OrderSource(bad_rows_day=bad_day)
