"""The separate virtual environment that the dagster-deltalake-pandas baselines run in.

dagster-deltalake-pandas 0.29.27 pins dagster 1.13.27 and pandas 2.3.3, which the project's
environment cannot hold, so the baselines of `bench/backfill_365.py` and `bench/small_run.py`
run in `bench/.venv-dagster-deltalake/` (git-ignored). It is created once, by whichever
benchmark needs it first, and reused by both: one install, one set of versions, so the two
baselines measure the same library.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BASELINE_VENV = BENCH / ".venv-dagster-deltalake"
BASELINE_PACKAGES = ("dagster-deltalake-pandas==0.29.27", "numpy")


def ensure_baseline_venv() -> Path:
    """The baseline's interpreter, installing its environment the first time.

    A marker file holding the package list records a finished install, so an interrupted one
    (or a changed list) is redone from scratch rather than half-used.
    """
    python = BASELINE_VENV / "bin" / "python"
    marker = BASELINE_VENV / ".bench-installed"
    wanted = "\n".join(BASELINE_PACKAGES)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    shutil.rmtree(BASELINE_VENV, ignore_errors=True)
    print(f"creating {BASELINE_VENV.relative_to(REPO)} ({', '.join(BASELINE_PACKAGES)})...")
    for command in (
        ["python3", "-m", "venv", str(BASELINE_VENV)],
        [str(python), "-m", "pip", "install", "-q", *BASELINE_PACKAGES],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    marker.write_text(wanted)
    return python
