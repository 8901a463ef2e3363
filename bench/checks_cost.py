"""What the reference pipeline's quality checks cost: checks on vs off, and vs re-reading.

  ON    the reference pipeline's daily assets (raw -> clean -> enriched -> revenue, and the
        export), each with its checks (`definitions/quality.py`), which ray_assets decides
        before each commit from the write's statistics and the rows its tasks write.
  OFF   the same assets with no checks (`RAY_ASSETS_REFERENCE_CHECKS=off`): the baseline.
  POST  OFF plus the same checks run the way Dagster runs checks by default: after the commit,
        as `@multi_asset_check`s that re-read each asset's partitions of the run (the checked
        columns only) and evaluate the same rules on them. Reported in the details: the
        approach the issue names as the one to beat.

One process, one Ray (started once, untimed), the customer dimension materialized once; then
for each repeat the three variants run, interleaved, each into a fresh folder, after one
untimed warm-up each. `checks_cost` = median(ON) / median(OFF), goal <= 1.15. Each run is
verified from the Delta logs (raw orders per day, revenue days), never by a deltalake scan.

Run: `.venv/bin/python bench/checks_cost.py [--days D] [--rows-per-day N] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script, not a package

import pyarrow.compute as pc  # noqa: E402
from _results import (  # noqa: E402
    VerificationError,
    exit_code_of,
    median,
    reproduce_command,
    spread,
    timed,
    write_result,
)
from overhead import day_keys, log_rows  # noqa: E402

VARIANTS = ("ON", "OFF", "POST")


def asset_lists(checks_on: bool) -> tuple[list[Any], list[Any], dict[str, list[Any]]]:
    """The code location's assets defined with or without checks (the module re-imported)."""
    os.environ["RAY_ASSETS_REFERENCE_CHECKS"] = "on" if checks_on else "off"
    import definitions.assets
    import definitions.quality

    importlib.reload(definitions.quality)
    assets = importlib.reload(definitions.assets)
    checked = {
        "clean_orders": definitions.quality.CLEAN_ORDERS,
        "orders_enriched": definitions.quality.ORDERS_ENRICHED,
        "daily_region_revenue": definitions.quality.DAILY_REGION_REVENUE,
    }
    return assets.ASSETS, assets.DAILY_ASSETS, checked


def post_commit_checks(checked: dict[str, list[Any]]) -> list[Any]:
    """The same rules as Dagster asset checks that re-read the committed partitions."""
    return [_post_check(name, rules) for name, rules in checked.items()]


def _post_check(name: str, rules: list[Any]) -> Any:
    import dagster as dg

    from definitions.assets import daily
    from ray_assets.checks.gate import CheckGate

    specs = [dg.AssetCheckSpec(rule.name, asset=name, blocking=rule.blocking) for rule in rules]

    @dg.multi_asset_check(
        specs=specs, name=f"{name}_post_checks", required_resource_keys={"delta_io_manager"}
    )
    def post(context):
        from ray_assets import PartitionSlice

        tags = context.run.tags
        keys = daily.get_partition_keys_in_range(
            dg.PartitionKeyRange(
                tags["dagster/asset_partition_range_start"],
                tags["dagster/asset_partition_range_end"],
            )
        )
        store = context.resources.delta_io_manager.store_for(dg.AssetKey(name))
        columns = sorted({c for rule in rules for c in rule.columns()} | {"order_date"})
        dataset = store.read(
            PartitionSlice.from_keys(daily, keys, "order_date", asset_key=name), columns
        )
        gate = CheckGate(rules)
        observer = gate.observer()
        state = observer.start() if observer else None
        rows: dict[str, int] = dict.fromkeys(keys, 0)
        nulls: dict[str, dict[str, int]] = {key: {} for key in keys}
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            for key in keys:
                part = batch.filter(pc.equal(batch["order_date"], key)) if len(keys) > 1 else batch
                if not part.num_rows:
                    continue
                rows[key] += part.num_rows
                for column in part.column_names:
                    nulls[key][column] = nulls[key].get(column, 0) + part[column].null_count
                if observer:
                    observer.observe(state, (key,), part)
        verdicts = gate(_Reread(dataset.schema().base_schema, rows, nulls, state))
        for rule in rules:
            by_key = verdicts["verdicts"][rule.name]
            yield dg.AssetCheckResult(
                asset_key=name, check_name=rule.name, passed=all(v[0] for v in by_key.values())
            )

    return post


class _Reread:
    """A re-read table as `CheckGate` expects a staged write."""

    def __init__(self, schema, rows, nulls, state) -> None:
        from ray_assets import PartitionSlice

        self.schema = schema
        self.partition_slice = PartitionSlice.unpartitioned("reread")
        self.observations = [state or {}]
        self._rows, self._nulls = rows, nulls

    def partition_key(self, values):
        return values[0]

    def rows_by_key(self):
        return self._rows

    def null_counts_by_key(self):
        return self._nulls

    def read_rows(self, key, columns):
        raise VerificationError("a post-commit check found repeated keys in the bench data")


def run_variant(
    variant: str, root: Path, days: list[str], rows_per_day: int, customers: int, lists: dict
) -> None:
    from definitions.sources import OrderSource
    from ray_assets import materialize_partition_range
    from resources.local import local_resources

    assets, daily_assets, checked = lists["ON" if variant == "ON" else "OFF"]
    extra = post_commit_checks(lists["ON"][2]) if variant == "POST" else []
    resources = {
        **local_resources(table_root=str(root)),
        "order_source": OrderSource(rows_per_day=rows_per_day, customers=customers),
    }
    if not (root / "customers").exists():
        import dagster as dg

        dimension = [a for a in assets if a not in daily_assets]
        dg.materialize(dimension, resources=resources)
    result = materialize_partition_range(
        [*assets, *extra],
        days[0],
        days[-1],
        selection=[*daily_assets, *extra],
        resources=resources,
    )
    if not result.success:
        raise VerificationError(f"{variant}: the run failed")


def verify(root: Path, days: list[str], rows_per_day: int) -> int:
    raw = log_rows(root / "raw_orders")
    if raw != dict.fromkeys(days, rows_per_day):
        raise VerificationError(f"{root}: raw_orders holds {raw}")
    revenue = log_rows(root / "daily_region_revenue")
    if set(revenue) != set(days):
        raise VerificationError(f"{root}: daily_region_revenue has days {sorted(revenue)}")
    return sum(revenue.values())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--rows-per-day", type=int, default=250_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="bench-checks-"))
    try:
        return exit_code_of(lambda: run(args, parser, out))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: Path) -> None:
    from ray.data import DataContext

    from ray_assets import RayResource

    RayResource().ensure_started()
    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("dagster").setLevel(logging.WARNING)
    days = day_keys(args.days)
    lists = {"ON": asset_lists(True), "OFF": asset_lists(False)}
    dimension = out / "dimension"

    def one_run(variant: str, label: str, rows_per_day: int) -> tuple[float, int]:
        root = out / f"{label}-{variant}"
        root.mkdir()
        for name in ("customers", "crm.db"):  # the dimension, materialized once, untimed
            if (dimension / name).exists():
                source = dimension / name
                (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
        seconds, _ = timed(
            lambda: run_variant(variant, root, days, rows_per_day, args.customers, lists)
        )
        revenue_rows = verify(root, days, rows_per_day)
        shutil.rmtree(root, ignore_errors=True)
        return seconds, revenue_rows

    run_variant("OFF", dimension, days[:1], 1_000, args.customers, lists)  # the dimension
    warmup = {v: one_run(v, "warmup", 2_000)[0] for v in VARIANTS}
    print("warm-up (untimed): " + ", ".join(f"{v} {s:.1f}s" for v, s in warmup.items()))
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    revenue_rows: dict[str, int] = {}
    for repeat in range(args.repeats):
        order = VARIANTS if repeat % 2 == 0 else tuple(reversed(VARIANTS))
        for variant in order:
            took, revenue_rows[variant] = one_run(variant, f"run{repeat}", args.rows_per_day)
            seconds[variant].append(took)
            print(f"[{repeat + 1}/{args.repeats}] {variant:<4} {took:7.1f} s", flush=True)
    if len(set(revenue_rows.values())) != 1:
        raise VerificationError(f"the variants disagree on revenue rows: {revenue_rows}")
    medians = {v: median(s) for v, s in seconds.items()}
    ratios = [on / off for on, off in zip(seconds["ON"], seconds["OFF"], strict=True)]
    post_ratios = [post / off for post, off in zip(seconds["POST"], seconds["OFF"], strict=True)]
    write_result(
        "checks_cost",
        medians["ON"] / medians["OFF"],
        unit="x",
        better="lower",
        goal="<= 1.15",
        baseline="the reference pipeline's daily assets with no checks, same data and command; "
        "value = median(seconds with ray_assets' checks) / median(seconds without). "
        "details.post_commit_vs_off is the same checks as Dagster asset checks that re-read "
        "the committed partitions",
        command=reproduce_command("bench/checks_cost.py", args, parser),
        spread=spread(ratios),
        details={
            "days": days,
            "rows_per_day": args.rows_per_day,
            "seconds": {v: [round(s, 2) for s in seconds[v]] for v in VARIANTS},
            "median_seconds": {v: round(m, 2) for v, m in medians.items()},
            "post_commit_vs_off": round(medians["POST"] / medians["OFF"], 3),
            "post_commit_vs_off_spread": [round(x, 3) for x in spread(post_ratios)],
            "ray_assets_vs_post_commit": round(medians["ON"] / medians["POST"], 3),
            "checks": {
                name: [rule.name for rule in rules] for name, rules in lists["ON"][2].items()
            },
        },
    )


if __name__ == "__main__":
    sys.exit(main())
