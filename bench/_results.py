"""Shared helpers for the benchmark scripts: timing, medians and one JSON file per result.

Every benchmark reports a *ratio against a named baseline* rather than raw seconds, because
raw seconds depend on the machine while the ratio is what a goal can be stated in. Each
result is written to `bench/results/<name>.json` with the command that reproduces it and the
machine it ran on, so a number found later can be judged (and re-measured) without guessing
where it came from. The scripts are run directly (`.venv/bin/python bench/<script>.py`), not
as a package, so they import this module by putting their own directory on `sys.path`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
"""Where results go: next to this file, whatever the current directory is."""

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda value, bound: value >= bound,
    "<=": lambda value, bound: value <= bound,
    ">": lambda value, bound: value > bound,
    "<": lambda value, bound: value < bound,
}


def median(xs: Sequence[float]) -> float:
    """Median of the timings: robust to the one run that hit a GC pause or a cold cache."""
    if not xs:
        raise ValueError("median of no timings")
    return float(statistics.median(xs))


def spread(xs: Sequence[float]) -> tuple[float, float]:
    """(min, max) of the per-repeat values, ignoring undefined (NaN) ones; NaNs if none is defined.

    Reported next to every median, so a reader sees how much one repeat can differ from the next
    before trusting a difference between two medians.
    """
    defined = [float(x) for x in xs if math.isfinite(x)]
    return (min(defined), max(defined)) if defined else (math.nan, math.nan)


def shown(value: float, value_spread: tuple[float, float] | None = None, unit: str = "") -> str:
    """`value` as printed in a summary: `"1.70x"`, or `"1.70x (1.62–1.81x)"` with its spread."""
    if value_spread is None:
        return f"{value:.2f}{unit}"
    low, high = value_spread
    return f"{value:.2f}{unit} ({low:.2f}–{high:.2f}{unit})"


def finite_or_none(x: float, digits: int = 3) -> float | None:
    """`x` rounded for a JSON file, or None (`null`) when it is undefined (NaN or infinite)."""
    return round(float(x), digits) if math.isfinite(x) else None


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Run `fn` once and return (wall-clock seconds, its result).

    Wall clock (`perf_counter`), not CPU time: the work under test runs in other processes
    (Ray workers, delta-rs threads), which CPU time of this process would not see.
    """
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def goal_met(value: float, goal: str) -> bool:
    """Whether `value` satisfies a goal written as `"<op> <number>"`, e.g. `">= 1.5"`."""
    op, _, bound = goal.strip().partition(" ")
    if op not in _COMPARISONS:
        raise ValueError(f"goal {goal!r} must look like '>= 1.5' (one of {list(_COMPARISONS)})")
    return _COMPARISONS[op](value, float(bound))


def machine_details() -> dict[str, Any]:
    """What the numbers depend on: cores, memory and the versions of the moving parts."""
    details: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "ram_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for module in ("ray", "deltalake", "pyarrow", "dagster"):
        try:
            details[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - a missing library is recorded, not fatal
            details[module] = None
    return details


def write_result(
    name: str,
    value: float,
    *,
    unit: str,
    better: Literal["higher", "lower"] | str,
    goal: str,
    baseline: str,
    command: str,
    details: dict[str, Any] | None = None,
    spread: tuple[float, float] | None = None,
) -> Path:
    """Write `bench/results/<name>.json` and print a one-line summary; return the file's path.

    `value` is the ratio against `baseline` (rounded to 3 decimals in the file; `null` when it
    is undefined, which misses any goal). `spread`, when given, is the (min, max) of the value's
    per-repeat counterparts: it is printed as `value (min–max)` and kept in the file as
    `details.value_spread`. A missed goal is still written and printed as MISSED: the result is
    reported, never hidden.
    """
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', not {better!r}")
    met = goal_met(value, goal)
    verdict: dict[str, Any] = {"goal_met": met}
    if spread is not None:
        verdict["value_spread"] = [finite_or_none(x) for x in spread]
    record = {
        "name": name,
        "value": finite_or_none(value),
        "unit": unit,
        "better": better,
        "goal": goal,
        "baseline": baseline,
        "command": command,
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "details": {**verdict, "machine": machine_details(), **(details or {})},
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")
    try:
        where = path.relative_to(Path.cwd())
    except ValueError:
        where = path
    print(
        f"{name}: {shown(value, spread, unit)} (goal {goal}, {better} is better: "
        f"{'met' if met else 'MISSED'}) -> {where}",
        flush=True,
    )
    return path


class VerificationError(RuntimeError):
    """A run produced tables that do not hold what was written: its timing is meaningless."""


def reproduce_command(
    script: str, args: argparse.Namespace, parser: argparse.ArgumentParser
) -> str:
    """The command line that repeats this run: the script plus every non-default argument."""
    parts = [".venv/bin/python", script]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        flag = action.option_strings[0]
        parts.append(flag if isinstance(action, argparse._StoreTrueAction) else f"{flag} {value}")
    return " ".join(parts)


def exit_code_of(run: Callable[[], None]) -> int:
    """Run a benchmark: 0 when it finished (goals met or not), 1 when a verification failed,
    2 on any other error; Ray is shut down either way."""
    try:
        run()
        return 0
    except VerificationError as error:
        print(f"VERIFICATION FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    except BaseException:  # noqa: BLE001 - reported, then the exit code says it failed
        traceback.print_exc()
        return 2
    finally:
        if "ray" in sys.modules:
            import ray

            ray.shutdown()


def exit_now(code: int) -> None:
    """Flush and leave without interpreter teardown.

    deltalake's (tokio) runtime and Ray's threads can abort the process at exit on this machine,
    which would turn a finished, reported run into a non-zero exit. Everything worth keeping is
    written and flushed before this.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
