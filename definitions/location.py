"""The reference code location's definitions: every asset, check, sensor, schedule and job of
`definitions/`, with the resources of the environment (`RAY_ASSETS_ENV=local`, the default, or
`cluster`; see `resources/`), plus the components declared in YAML under `definitions/declared/`.
Ray parallelises inside each step, so steps run in the run's own process
(`in_process_executor`): a second process per step would only pay Ray's start-up again.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from definitions.assets import ASSETS
from definitions.automation import JOBS, SCHEDULES, follow_upstream
from definitions.landing import landed_orders, landing_folder, landing_sensor
from definitions.models import MODEL_ASSETS
from ray_assets import run_failure_alerts
from resources import resources_for

defs = dg.Definitions.merge(
    dg.Definitions(
        assets=[*ASSETS, *MODEL_ASSETS, landing_folder, landed_orders],
        sensors=[landing_sensor, follow_upstream, run_failure_alerts()],
        jobs=JOBS,
        schedules=SCHEDULES,
        resources=resources_for(os.environ.get("RAY_ASSETS_ENV", "local")),
        executor=dg.in_process_executor,
    ),
    # the project's defs folder, `[tool.dg.project] defs_module` in pyproject.toml
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
)
