"""The benchmarks' own shared local Ray head: stopped at the end of a run, so nothing outlives it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def stop_head(head_dir: Path, environment: dict[str, str]) -> None:
    """Stop the head recorded in `head_dir` (only its own processes, never `ray stop`)."""
    subprocess.run(
        [sys.executable, "-m", "ray_assets.local_head", "--head-dir", str(head_dir), "stop"],
        env=environment,
        capture_output=True,
        timeout=120,
    )
