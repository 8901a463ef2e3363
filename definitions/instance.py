"""The project's persistent Dagster instance: what the demo, the CLI and `dagster dev` share.

An ephemeral instance forgets its runs when the process ends, so the demo's materializations
would never show in the UI. The instance lives in `$DAGSTER_HOME`, or `.dagster_home/` in the
project when it is unset (git-ignored), configured from the project's `dagster.yaml`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = PROJECT_ROOT / ".dagster_home"
REFERENCE_CONFIG = PROJECT_ROOT / "dagster.yaml"


def dagster_home() -> Path:
    """`$DAGSTER_HOME`, or the project's `.dagster_home/`; created with the reference config."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and REFERENCE_CONFIG.exists():
        shutil.copyfile(REFERENCE_CONFIG, config)
    return home


def project_instance() -> dg.DagsterInstance:
    """The persistent instance at `dagster_home()`, its GPU pool sized to this machine's GPUs
    (unless a limit was set for it already)."""
    from ray_assets import size_gpu_pool
    from ray_assets.actor_pools import machine_gpus

    home = dagster_home()
    os.environ.setdefault("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.from_config(str(home))
    size_gpu_pool(instance, machine_gpus())
    return instance
