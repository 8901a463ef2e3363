"""The ETL benchmark's input: a seeded set of Parquet files of orders, generated once per size.

Every engine of `bench/etl.py` reads the same files, so the input is generated once per row
count into `bench/.data/etl-<rows>/` (git-ignored) and reused by every later run: generating 60M
rows takes longer than most engines take to aggregate them. The files are written one at a time
(constant memory, whatever the size) from a numpy generator seeded per file, so the same size
always gives the same bytes. Generation also adds up, per day, the valid rows and their amount
in US dollars with numpy, and keeps those totals in the folder's manifest: an answer that owes
nothing to any engine under test, against which the reference engine's output is checked.

This module also holds what the engines share: the rates, the day keys, the job's columns and
the output table's name and columns.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20_240_101
FILES = 64
DAYS = 30
START_DATE = dt.date(2024, 1, 1)
GENERATOR_VERSION = 1
"""Bump when the generated data changes, so cached folders of the old shape are regenerated."""

RATES: dict[str, float] = {
    "USD": 1.0,
    "EUR": 1.08,
    "GBP": 1.27,
    "JPY": 0.0067,
    "CHF": 1.13,
    "CAD": 0.74,
    "AUD": 0.66,
    "CNY": 0.14,
}
"""Dollars per unit of each currency: the job's lookup table (fixed, so results are exact)."""
CURRENCY_WEIGHTS = (0.40, 0.20, 0.10, 0.08, 0.06, 0.06, 0.05, 0.05)
"""How often each currency of `RATES` occurs (in its order): skewed, as real orders are."""
VALID_SHARE = 0.9

INPUT_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("day", pa.string()),
        ("valid", pa.bool_()),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("customer_id", pa.int64()),
        ("note", pa.string()),
    ]
)
JOB_COLUMNS = ["day", "valid", "amount", "currency"]
"""The columns the job needs; `id`, `customer_id` and `note` are there to be skipped."""
TABLE_NAME = "daily_usd"
"""The output table, at `<engine's out folder>/daily_usd` (and the ray_assets asset's name)."""
OUTPUT_COLUMNS = ["day", "amount_usd", "orders"]
"""One row per day: the sum of the valid rows' dollar amounts and how many there were."""

DATA_ROOT = Path(__file__).resolve().parent / ".data"
MANIFEST = "manifest.json"
_NOTES = pa.array([f"{word} {i}" for i in range(50) for word in ("gift", "rush", "promo", "ok")])


def day_keys() -> list[str]:
    """The 30 days of the data, as the `day` column writes them and as daily partition keys."""
    return [(START_DATE + dt.timedelta(days=d)).isoformat() for d in range(DAYS)]


@dataclass(frozen=True)
class InputData:
    """A generated input folder: its files and the per-day answer generation computed."""

    folder: Path
    rows: int
    files: list[Path]
    expected: dict[str, tuple[float, int]]
    """Day -> (sum of amount_usd, count) over the valid rows, computed by numpy."""


def ensure_input(rows: int, root: Path = DATA_ROOT) -> InputData:
    """The input of `rows` rows, generated now unless a complete folder of this shape exists.

    A folder counts as complete only when its manifest, written last, matches the size, seed and
    generator version; anything else is generated again into a temporary folder that is renamed
    into place at the end, so an interrupted generation never leaves a half folder behind.
    """
    folder = root / f"etl-{rows}"
    cached = _read_manifest(folder, rows)
    if cached is not None:
        return cached
    shutil.rmtree(folder, ignore_errors=True)
    staging = root / f".etl-{rows}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    print(f"generating {rows:,} rows into {folder} ({FILES} Parquet files) ...", flush=True)
    sums = np.zeros(DAYS)
    counts = np.zeros(DAYS, dtype=np.int64)
    bounds = np.linspace(0, rows, FILES + 1, dtype=np.int64)
    for index, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        table, file_sums, file_counts = generate_file(index, int(start), int(end))
        pq.write_table(table, staging / _file_name(index))
        sums += file_sums
        counts += file_counts
    expected = {day: (float(sums[i]), int(counts[i])) for i, day in enumerate(day_keys())}
    manifest = {
        "rows": rows,
        "files": FILES,
        "seed": SEED,
        "generator_version": GENERATOR_VERSION,
        "expected": {day: list(value) for day, value in expected.items()},
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    staging.rename(folder)
    return InputData(folder, rows, _files_of(folder), expected)


def generate_file(index: int, start: int, end: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Rows `start..end` (file `index`) and their per-day dollar sums and counts of valid rows.

    Each file has its own generator seeded by (SEED, index), so a file does not depend on the
    files before it and the folder is the same bytes on every machine with this numpy.
    """
    rng = np.random.default_rng([SEED, index])
    n = end - start
    day_index = rng.integers(0, DAYS, n)
    valid = rng.random(n) < VALID_SHARE
    amount = np.round(rng.uniform(1.0, 500.0, n), 2)
    currency_index = rng.choice(len(RATES), n, p=CURRENCY_WEIGHTS)
    table = pa.Table.from_arrays(
        [
            pa.array(np.arange(start, end, dtype=np.int64)),
            pa.array(day_keys(), pa.string()).take(pa.array(day_index)),
            pa.array(valid),
            pa.array(amount),
            pa.array(list(RATES), pa.string()).take(pa.array(currency_index)),
            pa.array(rng.integers(1, 2_000_000, n, dtype=np.int64)),
            _NOTES.take(pa.array(rng.integers(0, len(_NOTES), n))),
        ],
        schema=INPUT_SCHEMA,
    )
    amount_usd = amount * np.array(list(RATES.values()))[currency_index]
    sums = np.bincount(day_index[valid], weights=amount_usd[valid], minlength=DAYS)
    counts = np.bincount(day_index[valid], minlength=DAYS)
    return table, sums, counts


def _file_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _files_of(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def _read_manifest(folder: Path, rows: int) -> InputData | None:
    """The cached input in `folder`, or None when it is missing, incomplete or of another shape."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    shape = (manifest.get("rows"), manifest.get("files"), manifest.get("seed"))
    if shape != (rows, FILES, SEED) or manifest.get("generator_version") != GENERATOR_VERSION:
        return None
    files = _files_of(folder)
    if len(files) != FILES:
        return None
    expected = {day: (float(s), int(c)) for day, (s, c) in manifest["expected"].items()}
    return InputData(folder, rows, files, expected)


def input_files(folder: Path) -> list[Path]:
    """The Parquet files of an input folder, in order (the manifest is not one of them)."""
    return _files_of(folder)
