"""A YAML row filter: conditions on columns, all of which a row must meet.

Conditions are structured (`{column: amount, op: ">", value: 0}`), not an expression string: the
YAML is checked when the code location loads (an unknown operator, a list where one value is
due), and the same conditions become a Ray Data expression (evaluated by Arrow in the read tasks,
never by Python code of ours), a pyarrow filter pushed into a Parquet read, or bound
parameters of a SQL read.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field, model_validator

if TYPE_CHECKING:
    from ray.data.expressions import Expr

Scalar = str | int | float | bool
Operator = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in", "is null", "is not null"]
_LIST_OPERATORS = {"in", "not in"}
_NULL_OPERATORS = {"is null", "is not null"}
_EQUALITIES = {"==", "in"}
_COMPARISONS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class Condition(dg.Model):
    """One condition of a row filter: `column op value`."""

    column: str = Field(description="The column the condition tests.")
    op: Operator = Field(
        description="==, !=, <, <=, >, >=, 'in' and 'not in' (a list of values), 'is null' "
        "and 'is not null' (no value)."
    )
    value: Scalar | list[Scalar] | None = Field(
        default=None,
        description="The value compared with, of the column's type (a date column takes no "
        "string); a list for 'in' and 'not in'; nothing for the null tests.",
    )

    @model_validator(mode="after")
    def _value_fits_the_operator(self) -> Condition:
        """A value that cannot mean anything with its operator is refused when the YAML loads,
        not by Arrow in the middle of a run."""
        if self.op in _NULL_OPERATORS:
            if self.value is not None:
                raise ValueError(f"'{self.op}' takes no value (column {self.column!r})")
        elif self.op in _LIST_OPERATORS:
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"'{self.op}' takes a list of values (column {self.column!r})")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"'{self.op}' takes one value (column {self.column!r})")
        return self

    def expression(self) -> Expr:
        """The condition as a Ray Data expression."""
        from ray.data.expressions import col, lit

        column = col(self.column)
        if self.op == "is null":
            return column.is_null()
        if self.op == "is not null":
            return column.is_not_null()
        if self.op == "in":
            return column.is_in(self.value)
        if self.op == "not in":
            return column.not_in(self.value)
        return _COMPARISONS[self.op](column, lit(self.value))


def expression(conditions: Sequence[Condition]) -> Expr | None:
    """All `conditions` as one Ray Data expression (their conjunction), None when there are none."""
    combined = None
    for condition in conditions:
        combined = condition.expression() if combined is None else combined & condition.expression()
    return combined


def split_equalities(conditions: Sequence[Condition]) -> tuple[dict[str, Any], list[Condition]]:
    """The `==` and `in` conditions as a column -> value(s) mapping, one per column (what a SQL
    read binds as parameters), and the conditions left for `expression`."""
    where: dict[str, Any] = {}
    rest: list[Condition] = []
    for condition in conditions:
        if condition.op in _EQUALITIES and condition.column not in where:
            where[condition.column] = condition.value
        else:
            rest.append(condition)
    return where, rest
