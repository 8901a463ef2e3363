"""The declarative checks themselves: what each one asks of a write, and how it decides.

A check is decided before the commit, from what the write already has in hand:

* **statistics** (`not_null`, `row_count`, `schema`): the per-file null counts, row counts and
  schema the write tasks report anyway; deciding them costs no pass over the data;
* **rows seen while writing** (`unique`, `between`, `accepted_values`, `expression`): the write
  tasks evaluate them on each block just before writing it as a file, so the rows checked are
  exactly the rows written and the pipeline still runs once.

This module imports neither Dagster nor Ray: the row checks travel to Ray workers inside the
write's datasink, and a worker should not pay Dagster's import for them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_SAMPLES = 5
"""Offending values a failed check reports."""
_SAMPLE_CHARS = 80
_NAME = re.compile(r"[^A-Za-z0-9_]+")


def check_name(*parts: object) -> str:
    """A Dagster check name from parts: letters, digits and underscores only."""
    text = "_".join(str(part) for part in parts if part not in (None, ""))
    return _NAME.sub("_", text).strip("_")[:120] or "check"


def show(value: object) -> str:
    """A value as a failed check reports it: `repr`, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _SAMPLE_CHARS else text[: _SAMPLE_CHARS - 1] + "…"


@dataclass(frozen=True)
class Verdict:
    """A check's outcome for one partition (`partition` None when the table is unpartitioned)."""

    passed: bool
    failed_rows: int = 0
    samples: tuple[str, ...] = ()
    detail: str = ""

    def to_json(self) -> list[Any]:
        return [self.passed, self.failed_rows, list(self.samples), self.detail]

    @classmethod
    def from_json(cls, value: Sequence[Any]) -> Verdict:
        passed, failed, samples, detail = value
        return cls(bool(passed), int(failed), tuple(samples), str(detail))


@dataclass
class Seen:
    """What the write tasks saw of one row check in one partition."""

    failed_rows: int = 0
    samples: list[str] = field(default_factory=list)
    hashes: list[np.ndarray] = field(default_factory=list)

    def add_samples(self, values: Iterable[str]) -> None:
        for value in values:
            if len(self.samples) >= MAX_SAMPLES:
                return
            if value not in self.samples:
                self.samples.append(value)

    def merge(self, other: Seen) -> None:
        self.failed_rows += other.failed_rows
        self.add_samples(other.samples)
        self.hashes.extend(other.hashes)


@dataclass(frozen=True)
class WrittenData:
    """What a check may look at: the written, not yet committed data of one write.

    `rows`, `null_counts` and `seen` are by partition key ("" when unpartitioned); `seen` maps
    each row check's name to what the write tasks saw of it in that partition.
    """

    schema: pa.Schema
    rows: Mapping[str, int]
    null_counts: Mapping[str, Mapping[str, int]]
    seen: Mapping[str, Mapping[str, Seen]]
    key_rows: Any = None
    """Callable(partition key, columns) -> iterator of pyarrow Tables: the written rows of that
    partition, those columns only (read back only to name a failed `unique` check's keys)."""


class Check:
    """One declarative check: a name, whether a failure blocks the commit, what it checks."""

    name: str
    blocking: bool
    description: str

    def columns(self) -> tuple[str, ...]:
        """Columns the data must have for the check to be decided."""
        return ()

    def decide(self, data: WrittenData) -> dict[str, Verdict]:
        """The verdict per partition key of the write."""
        raise NotImplementedError

    def missing_columns(self, schema: pa.Schema) -> list[str]:
        return [column for column in self.columns() if column not in schema.names]


class RowCheck(Check):
    """A check the write tasks evaluate on every block as they write it."""

    def observe(self, table: pa.Table) -> Seen:
        """What this block contributes (runs in a Ray task, on the block about to be written)."""
        raise NotImplementedError

    def decide(self, data: WrittenData) -> dict[str, Verdict]:
        seen = data.seen.get(self.name, {})
        verdicts = {}
        for key in data.rows:
            part = seen.get(key, Seen())
            verdicts[key] = Verdict(
                passed=part.failed_rows == 0,
                failed_rows=part.failed_rows,
                samples=tuple(part.samples),
                detail=self.failure_text(part.failed_rows) if part.failed_rows else "",
            )
        return verdicts

    def failure_text(self, failed_rows: int) -> str:
        raise NotImplementedError


# ---------------------------------------------------------------------- from statistics
@dataclass(frozen=True)
class NotNull(Check):
    """No nulls in the columns, read from each written file's null counts."""

    column_names: tuple[str, ...]
    name: str
    blocking: bool = True

    @property
    def description(self) -> str:
        return f"{', '.join(self.column_names)} never null"

    def columns(self) -> tuple[str, ...]:
        return self.column_names

    def decide(self, data: WrittenData) -> dict[str, Verdict]:
        verdicts = {}
        for key in data.rows:
            counts = data.null_counts.get(key, {})
            nulls = {c: counts.get(c, 0) for c in self.column_names if counts.get(c, 0)}
            verdicts[key] = Verdict(
                passed=not nulls,
                failed_rows=max(nulls.values(), default=0),
                detail="; ".join(f"{n} null value(s) in '{c}'" for c, n in nulls.items()),
            )
        return verdicts


@dataclass(frozen=True)
class RowCount(Check):
    """Each partition (or the unpartitioned table) holds between `min` and `max` rows."""

    min: int | None
    max: int | None
    name: str
    blocking: bool = True

    @property
    def description(self) -> str:
        low = "" if self.min is None else f"at least {self.min:,}"
        high = "" if self.max is None else f"at most {self.max:,}"
        return f"{' and '.join(p for p in (low, high) if p)} row(s) per partition"

    def decide(self, data: WrittenData) -> dict[str, Verdict]:
        verdicts = {}
        for key, rows in data.rows.items():
            low = self.min is not None and rows < self.min
            high = self.max is not None and rows > self.max
            detail = ""
            if low:
                detail = f"{rows:,} row(s), fewer than the minimum {self.min:,}"
            elif high:
                detail = f"{rows:,} row(s), more than the maximum {self.max:,}"
            verdicts[key] = Verdict(passed=not (low or high), detail=detail)
        return verdicts


@dataclass(frozen=True)
class SchemaIs(Check):
    """The written columns have the expected types (and no others unless `allow_extra`)."""

    expected: tuple[tuple[str, pa.DataType], ...]
    allow_extra: bool
    name: str
    blocking: bool = True

    @property
    def description(self) -> str:
        shown = ", ".join(f"{n}: {t}" for n, t in self.expected)
        return f"columns {shown}" + (" (others allowed)" if self.allow_extra else " only")

    def decide(self, data: WrittenData) -> dict[str, Verdict]:
        problems = []
        for name, kind in self.expected:
            if name not in data.schema.names:
                problems.append(f"'{name}' missing (expected {kind})")
            elif data.schema.field(name).type != kind:
                problems.append(f"'{name}' is {data.schema.field(name).type}, expected {kind}")
        if not self.allow_extra:
            expected = {name for name, _ in self.expected}
            extra = [n for n in data.schema.names if n not in expected]
            problems.extend(f"'{name}' not expected" for name in extra)
        verdict = Verdict(passed=not problems, detail="; ".join(problems))
        return dict.fromkeys(data.rows, verdict)


# ---------------------------------------------------------------------- rows seen while writing
@dataclass(frozen=True)
class Unique(RowCheck):
    """No two rows of a partition share the key columns (rows with a null key are not compared).

    Each write task hashes the key columns of the rows it writes (64 bits per row, the key
    itself for a single integer column); the driver looks for repeated hashes and, only when
    it finds some, reads the written keys back to confirm and name them. The driver holds 8
    bytes per row written.
    """

    column_names: tuple[str, ...]
    name: str
    blocking: bool = True

    @property
    def description(self) -> str:
        return f"({', '.join(self.column_names)}) unique within each partition"

    def columns(self) -> tuple[str, ...]:
        return self.column_names

    def observe(self, table: pa.Table) -> Seen:
        keys = table.select(list(self.column_names))
        return Seen(hashes=[row_hashes(keys.drop_null())])

    def decide(self, data: WrittenData) -> dict[str, Verdict]:
        seen = data.seen.get(self.name, {})
        verdicts = {}
        for key in data.rows:
            part = seen.get(key)
            repeated = repeated_hashes(part.hashes if part else [])
            if not len(repeated):
                verdicts[key] = Verdict(passed=True)
                continue
            verdicts[key] = self._confirm(data, key, repeated)
        return verdicts

    def _confirm(self, data: WrittenData, key: str, repeated: np.ndarray) -> Verdict:
        """Read the written keys whose hash repeats and count the exact duplicates."""
        candidates = []
        wanted = pa.array(repeated)
        for table in data.key_rows(key, list(self.column_names)):
            keys = table.drop_null()
            mask = pc.is_in(pa.array(row_hashes(keys)), value_set=wanted)
            candidates.append(keys.filter(mask))
        if not candidates:
            return Verdict(passed=True)
        found = (
            pa.concat_tables(candidates)
            .group_by(list(self.column_names))
            .aggregate([([], "count_all")])
        )
        duplicated = found.filter(pc.greater(found["count_all"], 1))
        if duplicated.num_rows == 0:
            return Verdict(passed=True)  # hash collisions only
        duplicated = duplicated.sort_by([("count_all", "descending")])
        rows = int(pc.sum(duplicated["count_all"]).as_py())
        samples = []
        for record in duplicated.slice(0, MAX_SAMPLES).to_pylist():
            count = record.pop("count_all")
            shown = show(next(iter(record.values()))) if len(record) == 1 else show(record)
            samples.append(f"{shown} ×{count}")
        return Verdict(
            passed=False,
            failed_rows=rows,
            samples=tuple(samples),
            detail=f"{duplicated.num_rows:,} key value(s) repeat, in {rows:,} row(s)",
        )


@dataclass(frozen=True)
class Between(RowCheck):
    """Values of `column` within [`low`, `high`] (either bound may be None; nulls pass).

    Each block's min and max (the figures that also become the file's Delta statistics)
    decide it; only a block whose range falls outside is scanned, to count and name the
    offending values.
    """

    column: str
    low: Any
    high: Any
    name: str
    blocking: bool = True

    @property
    def description(self) -> str:
        low = "-∞" if self.low is None else show(self.low)
        high = "∞" if self.high is None else show(self.high)
        return f"{self.column} within [{low}, {high}]"

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def observe(self, table: pa.Table) -> Seen:
        values = table.column(self.column)
        bounds = pc.min_max(values)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is None or (
            (self.low is None or low >= self.low) and (self.high is None or high <= self.high)
        ):
            if not _has_nan(values):
                return Seen()
        outside = _outside(values, self.low, self.high)
        offending = values.filter(outside)
        seen = Seen(failed_rows=len(offending))
        seen.add_samples(show(v) for v in pc.unique(offending).slice(0, MAX_SAMPLES).to_pylist())
        return seen

    def failure_text(self, failed_rows: int) -> str:
        return f"{failed_rows:,} value(s) of '{self.column}' outside {self.description.split(' ', 2)[2]}"


@dataclass(frozen=True)
class AcceptedValues(RowCheck):
    """Every non-null value of `column` is one of `values`."""

    column: str
    values: tuple[Any, ...]
    name: str
    blocking: bool = True

    @property
    def description(self) -> str:
        shown = ", ".join(show(v) for v in self.values[:10])
        more = f" and {len(self.values) - 10} more" if len(self.values) > 10 else ""
        return f"{self.column} in {{{shown}{more}}}"

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def observe(self, table: pa.Table) -> Seen:
        values = table.column(self.column)
        accepted = pa.array(list(self.values)).cast(values.type)
        outside = pc.and_(pc.invert(pc.is_in(values, value_set=accepted)), pc.is_valid(values))
        offending = values.filter(outside)
        seen = Seen(failed_rows=len(offending))
        if len(offending):
            seen.add_samples(
                show(v) for v in pc.unique(offending).slice(0, MAX_SAMPLES).to_pylist()
            )
        return seen

    def failure_text(self, failed_rows: int) -> str:
        return f"{failed_rows:,} value(s) of '{self.column}' not among the accepted values"


@dataclass(frozen=True)
class Expression(RowCheck):
    """A row-level rule every row must satisfy: a Ray Data expression (`col("a") > 0`) or a
    pyarrow compute expression. A row where the rule is null passes, as in a SQL CHECK."""

    rule: Any
    name: str
    text: str
    blocking: bool = True

    @property
    def description(self) -> str:
        return self.text

    def columns(self) -> tuple[str, ...]:
        return tuple(_expression_columns(self.rule))

    def observe(self, table: pa.Table) -> Seen:
        rule = _as_pyarrow(self.rule)
        failing = table.filter(~rule)  # a null rule drops the row: it passes
        seen = Seen(failed_rows=failing.num_rows)
        if failing.num_rows:
            shown_columns = list(self.columns()) or failing.column_names
            rows = failing.select(shown_columns).slice(0, MAX_SAMPLES).to_pylist()
            seen.add_samples(
                show(row if len(row) > 1 else next(iter(row.values()))) for row in rows
            )
        return seen

    def failure_text(self, failed_rows: int) -> str:
        return f"{failed_rows:,} row(s) break the rule {self.text}"


def sorted_run(hashes: list[np.ndarray]) -> list[np.ndarray]:
    """A task's hashes of one partition as one sorted array: the sorting happens in parallel in
    the write tasks, and the driver only merges sorted runs."""
    if not hashes:
        return []
    merged = np.concatenate(hashes) if len(hashes) > 1 else hashes[0]
    return [np.sort(merged, kind="stable")]


def repeated_hashes(runs: list[np.ndarray]) -> np.ndarray:
    """The values that occur more than once in sorted `runs` (a stable sort of concatenated
    sorted runs is a merge: timsort finds the runs)."""
    if not runs:
        return np.empty(0, np.uint64)
    merged = np.sort(np.concatenate(runs), kind="stable") if len(runs) > 1 else runs[0]
    repeats = merged[1:][merged[1:] == merged[:-1]]
    return np.unique(repeats) if len(repeats) else repeats


def row_hashes(keys: pa.Table) -> np.ndarray:
    """A 64-bit value per row of `keys`: the value itself for one integer column (exact), else
    pandas' stable row hash of the columns (the same in every process)."""
    if keys.num_columns == 1 and pa.types.is_integer(keys.schema.field(0).type):
        return keys.column(0).to_numpy().astype(np.int64).view(np.uint64)
    import pandas as pd

    frame = keys.to_pandas()
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)


def _has_nan(values: pa.ChunkedArray) -> bool:
    return pa.types.is_floating(values.type) and bool(pc.any(pc.is_nan(values)).as_py())


def _outside(values: pa.ChunkedArray, low: Any, high: Any) -> pa.ChunkedArray:
    """True where a (non-null) value lies outside the bounds; NaN is outside any bound."""
    outside = None
    checks = []
    if low is not None:
        checks.append(pc.less(values, pa.scalar(low).cast(values.type)))
    if high is not None:
        checks.append(pc.greater(values, pa.scalar(high).cast(values.type)))
    if _has_nan(values):
        checks.append(pc.is_nan(values))
    for check in checks:
        outside = check if outside is None else pc.or_(outside, check)
    if outside is None:
        return pa.chunked_array([pa.array(np.zeros(len(values), dtype=bool))])
    return pc.fill_null(outside, False)


def _as_pyarrow(rule: Any) -> pc.Expression:
    if isinstance(rule, pc.Expression):
        return rule
    to_pyarrow = getattr(rule, "to_pyarrow", None)
    if to_pyarrow is None:
        raise TypeError(
            f"a check rule must be a Ray Data expression (ray.data.expressions.col('a') > 0) or "
            f"a pyarrow.compute.Expression, not {type(rule).__name__}"
        )
    return to_pyarrow()


def _expression_columns(rule: Any) -> list[str]:
    """Columns a Ray Data expression refers to, in order (empty for a pyarrow expression)."""
    found: dict[str, None] = {}

    def walk(node: Any) -> None:
        if type(node).__name__ == "ColumnExpr":
            found[node.name] = None
            return
        for attribute in ("left", "right", "operand", "expr"):
            child = getattr(node, attribute, None)
            if child is not None and not isinstance(child, (str, int, float, bool)):
                walk(child)
        for child in getattr(node, "args", ()) or ():
            walk(child)

    if not isinstance(rule, pc.Expression):
        walk(rule)
    return list(found)


def as_arrow_type(kind: Any) -> pa.DataType:
    """A declared type: a pyarrow type or a name (`"int64"`, `"timestamp[us, tz=UTC]"`, `"text"`)."""
    from ray_assets.storage.arrow_schema import arrow_type_from_name, delta_type

    if isinstance(kind, pa.DataType):
        return delta_type(kind)
    parsed = arrow_type_from_name(str(kind))
    if parsed is None:
        raise TypeError(f"unknown column type {kind!r}: give a pyarrow type or its name")
    return delta_type(parsed)


def comparable_bound(value: Any) -> Any:
    """A bound as Arrow compares it: dates and datetimes pass through, numbers stay numbers."""
    if isinstance(value, (dt.date, dt.datetime, int, float, str)) or value is None:
        return value
    raise TypeError(f"a bound must be a number, a string, a date or a datetime, not {value!r}")
