"""Incremental processing: order files that land in a folder, one sub-folder per day.

Another system drops Parquet or CSV exports into `<landing>/order_date=<YYYY-MM-DD>/`. Three
parts turn them into Delta partitions, exactly the days that changed:

* `landing_folder`, an observable source asset: its data version is a digest of the folder's
  files, so the UI shows when the landing zone changed.
* `landed_orders`, a daily `ray_asset` that reads the day's files (and nothing else).
* `landing_sensor`: its cursor remembers each file's size and modification time; a tick
  requests one run per day that gained a new or rewritten file. A late file for an old day
  re-materializes that day only, and an unchanged folder requests nothing.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
import ray.data
from pydantic import Field

from definitions.assets import daily, daily_asset
from definitions.transforms import EXPORT_COLUMN_TYPES, read_exports

PARTITION_PREFIX = "order_date="
SUFFIXES = (".parquet", ".csv")
DEFAULT_LANDING_DIR = "landing"


class LandingFolder(dg.ConfigurableResource):
    """Where the order exports land: `<path>/order_date=<day>/<file>.parquet|.csv`."""

    path: str = Field(
        default=DEFAULT_LANDING_DIR,
        description="The landing folder; one sub-folder per day named order_date=<YYYY-MM-DD>.",
    )

    def files(self) -> Iterator[tuple[str, Path]]:
        """(day, file) of every landed export, days that are not daily partitions ignored."""
        root = Path(self.path)
        if not root.is_dir():
            return
        for folder in sorted(root.iterdir()):
            day = folder.name.removeprefix(PARTITION_PREFIX)
            if not folder.name.startswith(PARTITION_PREFIX) or not _is_day(day):
                continue
            for file in sorted(folder.iterdir()):
                if file.suffix in SUFFIXES and file.is_file():
                    yield day, file

    def files_of(self, day: str) -> list[Path]:
        return [file for file_day, file in self.files() if file_day == day]

    def state(self) -> dict[str, list[int]]:
        """Each file's (size, modification time in ns), by path: what the sensor's cursor keeps."""
        return {
            str(file): [stat.st_size, stat.st_mtime_ns]
            for _, file in self.files()
            for stat in [file.stat()]
        }


def _is_day(key: str) -> bool:
    try:
        daily.time_window_for_partition_key(key)
    except Exception:  # noqa: BLE001 - not a key of the daily partitions
        return False
    return True


def folder_version(landing: LandingFolder) -> dg.DataVersion:
    """A digest of every landed file's path, size and modification time."""
    return dg.DataVersion(_digest(landing.state()))


with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)

    @dg.observable_source_asset(
        description="The landing folder of the order exports; its version changes with its files.",
        group_name="landing",
    )
    def landing_folder(landing: LandingFolder) -> dg.DataVersion:
        return folder_version(landing)


@daily_asset(
    description="The orders exported into the landing folder for the day (Parquet or CSV).",
    deps=[landing_folder],
    group_name="landing",
)
def landed_orders(context: dg.AssetExecutionContext, landing: LandingFolder) -> ray.data.Dataset:
    files = [file for day in context.partition_keys for file in landing.files_of(day)]
    if not files:
        # nothing landed for these days (yet): they are empty, not an error of the run
        context.log.warning(f"no order exports for {context.partition_keys} under {landing.path}")
        return ray.data.from_arrow(pa.schema(EXPORT_COLUMN_TYPES).empty_table())
    context.log.info(f"reading {len(files)} landed file(s)")
    # One task per file, reading it with pyarrow: Ray's file readers list their inputs in
    # threaded tasks, and two of them at once (Parquet and CSV exports of one day) raced on
    # importing fsspec in the same worker (ImportError: cannot import name 'HTTPFileSystem').
    paths = ray.data.from_items([{"path": str(f)} for f in files], override_num_blocks=len(files))
    return paths.map_batches(read_exports, batch_size=1, batch_format="pyarrow")


@dg.sensor(
    asset_selection=[landed_orders],
    minimum_interval_seconds=15,  # a listing of one folder: cheap enough to look often
    description="Requests exactly the days whose landing sub-folder got a new or changed file.",
)
def landing_sensor(
    context: dg.SensorEvaluationContext, landing: LandingFolder
) -> dg.SensorResult | dg.SkipReason:
    seen: dict[str, list[int]] = json.loads(context.cursor) if context.cursor else {}
    state = landing.state()
    changed = sorted({_day_of(path) for path, stat in state.items() if seen.get(path) != stat})
    if not changed:
        return dg.SkipReason(f"no new or changed files in {landing.path}")
    requests = [
        dg.RunRequest(
            partition_key=day,
            run_key=f"{day}:{_digest({p: s for p, s in state.items() if _day_of(p) == day})}",
            tags={"landing/files": str(sum(_day_of(p) == day for p in state))},
        )
        for day in changed
    ]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(state, sort_keys=True))


def _day_of(path: str) -> str:
    return Path(path).parent.name.removeprefix(PARTITION_PREFIX)


def _digest(state: dict[str, list[int]]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
