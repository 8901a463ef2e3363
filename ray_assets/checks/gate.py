"""The checks of one write, decided between its two phases (files written, nothing committed).

`CheckGate` is what `DeltaStore.write` calls before the commit: it gathers what the write
tasks saw (`RowCheckObserver`), decides every check for every partition of the write, and
raises `CheckFailedError` when a blocking check failed, so the commit never happens. What it
decided is kept in the commit, so a re-run of the same Dagster run reports the same results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ray_assets.checks.rules import Check, RowCheck, Seen, Verdict, WrittenData, sorted_run
from ray_assets.errors import CheckFailedError

_RECORD_VERSION = 1


class RowCheckObserver:
    """Runs the row checks on every block a write task writes (see `BlockObserver`)."""

    def __init__(self, checks: Sequence[RowCheck]) -> None:
        self._checks = tuple(checks)

    def start(self) -> dict[tuple[str, tuple[str, ...]], Seen]:
        return {}

    def observe(
        self,
        state: dict[tuple[str, tuple[str, ...]], Seen],
        partition_values: tuple[str, ...],
        rows: pa.Table,
    ) -> None:
        for check in self._checks:
            if check.missing_columns(rows.schema):
                continue  # decided on the driver: the check fails with the missing columns
            seen = check.observe(rows)
            state.setdefault((check.name, partition_values), Seen()).merge(seen)

    def finish(
        self, state: dict[tuple[str, tuple[str, ...]], Seen]
    ) -> dict[tuple[str, tuple[str, ...]], Seen]:
        for seen in state.values():
            seen.hashes = sorted_run(seen.hashes)
        return state


@dataclass(frozen=True)
class CheckResults:
    """Every check's verdict for every partition key of one write ("" when unpartitioned)."""

    checks: tuple[Check, ...]
    verdicts: Mapping[str, Mapping[str, Verdict]]
    """Check name -> partition key -> verdict."""

    def failed(self, *, blocking: bool) -> list[tuple[Check, str, Verdict]]:
        return [
            (check, key, verdict)
            for check in self.checks
            if check.blocking == blocking
            for key, verdict in self.verdicts.get(check.name, {}).items()
            if not verdict.passed
        ]

    def to_record(self) -> dict[str, Any]:
        return {
            "version": _RECORD_VERSION,
            "verdicts": {
                name: {key: verdict.to_json() for key, verdict in by_key.items()}
                for name, by_key in self.verdicts.items()
            },
        }

    @classmethod
    def from_record(cls, checks: Sequence[Check], record: Mapping[str, Any] | None) -> CheckResults:
        """The results a commit kept; checks it did not decide (added since) are left out."""
        verdicts = (record or {}).get("verdicts") or {}
        return cls(
            tuple(checks),
            {
                name: {key: Verdict.from_json(value) for key, value in by_key.items()}
                for name, by_key in verdicts.items()
                if any(check.name == name for check in checks)
            },
        )


class CheckGate:
    """Decides `checks` on a staged write; a blocking failure stops the commit."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self.checks = tuple(checks)
        names = [check.name for check in self.checks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"two checks share the name(s) {repeated}: give one of them name=...")
        self.results: CheckResults | None = None

    def observer(self) -> RowCheckObserver | None:
        row_checks = [check for check in self.checks if isinstance(check, RowCheck)]
        return RowCheckObserver(row_checks) if row_checks else None

    def __call__(self, staged: Any) -> dict[str, Any]:
        """Decide every check on `staged` (a `StagedWrite`); raise when a blocking one failed."""
        data = _written_data(staged)
        verdicts: dict[str, dict[str, Verdict]] = {}
        for check in self.checks:
            missing = check.missing_columns(data.schema)
            if missing:
                failure = Verdict(
                    passed=False,
                    detail=f"column(s) {missing} are not in the data (its columns: "
                    f"{data.schema.names})",
                )
                verdicts[check.name] = dict.fromkeys(data.rows, failure)
            else:
                verdicts[check.name] = check.decide(data)
        self.results = CheckResults(self.checks, verdicts)
        blocking = self.results.failed(blocking=True)
        if blocking:
            raise CheckFailedError(
                f"{staged.partition_slice.describe()}: nothing was committed (the table stays as "
                f"it was) because {failure_summary(blocking)}",
                results=self.results,
            )
        return self.results.to_record()


def failure_summary(failures: Sequence[tuple[Check, str, Verdict]]) -> str:
    """One line per failed check and partition: what failed, how many rows, which values."""
    lines = []
    for check, key, verdict in failures:
        where = f" on partition '{key}'" if key else ""
        values = f"; offending values: {', '.join(verdict.samples)}" if verdict.samples else ""
        lines.append(
            f"check '{check.name}' ({check.description}) failed{where}: {verdict.detail}{values}"
        )
    head = (
        f"{len(failures)} blocking check result(s) failed"
        if len(failures) > 1
        else "a blocking check failed"
    )
    return head + ":\n  " + "\n  ".join(lines)


def _written_data(staged: Any) -> WrittenData:
    seen: dict[str, dict[str, Seen]] = {}
    for observations in staged.observations:
        for (name, values), part in (observations or {}).items():
            key = staged.partition_key(values)
            seen.setdefault(name, {}).setdefault(key, Seen()).merge(part)
    return WrittenData(
        schema=staged.schema,
        rows=staged.rows_by_key(),
        null_counts=staged.null_counts_by_key(),
        seen=seen,
        key_rows=staged.read_rows,
    )
