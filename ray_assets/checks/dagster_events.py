"""Checks as Dagster sees them: `AssetCheckSpec`s on the asset, and results per partition.

Dagster attributes an `AssetCheckResult` to a partition only when the step has exactly one
partition key; in a range run it records one unpartitioned result and leaves the partitions'
records planned. So a range run yields one `AssetCheckEvaluation` per partition (the UI's
partition view then shows which day failed) and, because Dagster requires a result per
declared check, one summary `AssetCheckResult` over the whole run.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import dagster as dg

from ray_assets.checks.gate import CheckResults
from ray_assets.checks.rules import Check, Verdict


def check_specs(
    checks: Sequence[Check],
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition | None,
) -> list[dg.AssetCheckSpec]:
    """One spec per check, blocking as the check says, partitioned as the asset (Dagster 1.13
    calls partitioned checks a preview; they are what gives each partition its result)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return _specs(checks, asset_key, partitions_def)


def _specs(
    checks: Sequence[Check],
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition | None,
) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            check.name,
            asset=asset_key,
            description=f"{check.description} ({'blocks the commit' if check.blocking else 'warns'}"
            "; decided by ray_assets before the commit)",
            blocking=check.blocking,
            partitions_def=partitions_def,
        )
        for check in checks
    ]


def _metadata(check: Check, key: str, verdict: Verdict) -> dict[str, Any]:
    """A passing verdict says little (every event costs Dagster a write); a failing one says all."""
    if verdict.passed:
        return {"failed_rows": 0}
    metadata: dict[str, Any] = {"failed_rows": verdict.failed_rows, "detail": verdict.detail}
    if key:
        metadata["partition"] = key
    if verdict.samples:
        metadata["offending_values"] = dg.MetadataValue.md(
            "\n".join(f"- `{sample}`" for sample in verdict.samples)
        )
    return metadata


def _severity(check: Check) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN


def partition_evaluations(
    results: CheckResults, asset_key: dg.AssetKey
) -> list[dg.AssetCheckEvaluation]:
    """One evaluation per check and partition (partition None when unpartitioned)."""
    events = []
    for check in results.checks:
        for key, verdict in results.verdicts.get(check.name, {}).items():
            events.append(
                dg.AssetCheckEvaluation(
                    asset_key=asset_key,
                    check_name=check.name,
                    passed=verdict.passed,
                    metadata=_metadata(check, key, verdict),
                    severity=_severity(check),
                    description=verdict.detail or None,
                    blocking=check.blocking,
                    partition=key or None,
                )
            )
    return events


def check_results(
    results: CheckResults, asset_key: dg.AssetKey, *, per_partition: bool
) -> tuple[list[dg.AssetCheckEvaluation], list[dg.AssetCheckResult]]:
    """The events a successful write yields: per-partition evaluations (range runs only) and
    one result per check, which Dagster attributes to the run's partition when it has one."""
    evaluations = partition_evaluations(results, asset_key) if per_partition else []
    summaries = []
    for check in results.checks:
        by_key = results.verdicts.get(check.name)
        if by_key is None:
            continue  # decided by an earlier commit that did not have this check
        failed = {key: verdict for key, verdict in by_key.items() if not verdict.passed}
        if not per_partition and len(by_key) == 1:
            key, verdict = next(iter(by_key.items()))
            summaries.append(
                dg.AssetCheckResult(
                    asset_key=asset_key,
                    check_name=check.name,
                    passed=verdict.passed,
                    metadata=_metadata(check, key, verdict),
                    severity=_severity(check),
                    description=verdict.detail or None,
                )
            )
            continue
        detail = "; ".join(
            f"{key}: {verdict.detail}" for key, verdict in list(failed.items())[:5]
        ) + (f"; and {len(failed) - 5} more partition(s)" if len(failed) > 5 else "")
        summaries.append(
            dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=check.name,
                passed=not failed,
                metadata={
                    "partitions_checked": len(by_key),
                    "partitions_failed": len(failed),
                    "failed_partitions": dg.MetadataValue.json(sorted(failed)),
                    "failed_rows": sum(v.failed_rows for v in failed.values()),
                },
                severity=_severity(check),
                description=detail or None,
            )
        )
    return evaluations, summaries
