"""`RayTableAsset`: a `ray_asset` over a table, declared in YAML as a Dagster Component.

A team that only needs "these columns of those rows of that table, day by day, as a table of
ours" writes a `defs.yaml` instead of Python; the asset it gets is an ordinary `ray_asset`
(single-run backfills, the `ray` pool, one commit per run, the IO manager's table), whose body
returns the lazy Dataset of the source's rows. Everything the YAML says is checked when the code
location loads, and a mistake names its field (`attributes.source.tagged-union[...].delta.uri`,
`attributes.row_filter...0.op`).

This module defines asset functions, whose annotations Dagster resolves at definition time: it
does not use `from __future__ import annotations`, and the functions annotate no Ray type (their
input, a lazy `ray.data.Dataset`, is `Any` to Dagster).
"""

import re
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, field_validator

from ray_assets.asset import DEFAULT_IO_MANAGER_KEY, ray_asset
from ray_assets.components.row_filter import Condition
from ray_assets.components.scaffolder import RayTableAssetScaffolder
from ray_assets.components.sources import (
    AssetSource,
    ReadRequest,
    ResolvedSource,
    SqlSource,
    filtered,
)

if TYPE_CHECKING:
    import ray.data

_NAME = re.compile(r"^[A-Za-z0-9_]+$")
"""Dagster's rule for each part of an asset key given as a name and prefix."""
UPSTREAM_INPUT = "source"
"""The input name of an `asset` source."""


class DailyPartitions(dg.Model):
    """One partition per day, kept in a column of the source and of the asset's table."""

    start_date: str = Field(description="The first day, YYYY-MM-DD.")
    column: str = Field(
        description="The column that holds the day in the source and in the asset's table: the "
        "key as written ('2024-01-03') or a date. A Delta source must be partitioned by it."
    )

    @field_validator("start_date")
    @classmethod
    def _a_day(cls, start_date: str) -> str:
        """Dagster would refuse it too, but only when it builds the asset, without the field."""
        dg.DailyPartitionsDefinition(start_date=start_date)
        return start_date

    def definition(self) -> dg.DailyPartitionsDefinition:
        return dg.DailyPartitionsDefinition(start_date=self.start_date)


@dg.scaffold_with(RayTableAssetScaffolder)
class RayTableAsset(dg.Component, dg.Resolvable, dg.Model):
    """A Ray asset over a table: a Delta table, Parquet files, a SQL table or another asset,
    with the columns and rows it keeps, optionally one partition per day. It is a `ray_asset`
    whose body returns the lazy Dataset of the source's rows for the run's partitions, stored
    by the IO manager at `io_manager_key`; it needs the `ray` resource like every `ray_asset`.

    Example `defs.yaml`:

        type: ray_assets.components.RayTableAsset
        attributes:
          key: large_orders
          source: {type: asset, key: clean_orders}
          columns:
            - order_id
            - amount
          row_filter:
            - {column: amount, op: ">=", value: 500}
          partitions: {start_date: "2024-01-01", column: order_date}
          group_name: sales
    """

    key: str = Field(description="The asset's key; '/' separates a prefix: 'sales/large_orders'.")
    source: ResolvedSource = Field(
        description="Where the rows come from, by `type`: delta (uri), parquet (path, "
        "partitioning), sql (table, resource_key, shard_column) or asset (key)."
    )
    columns: list[str] | None = Field(
        default=None,
        min_length=1,
        description="The columns to keep, in this order (the partition column always stays); "
        "all of them when not given.",
    )
    row_filter: list[Condition] | None = Field(
        default=None,
        description="Conditions every kept row meets, e.g. [{column: amount, op: '>', value: "
        "0}]; pushed into Parquet and SQL reads.",
    )
    partitions: DailyPartitions | None = Field(
        default=None, description="One partition per day; unpartitioned when not given."
    )
    group_name: str | None = Field(default=None, description="The asset's group in the UI.")
    description: str | None = Field(default=None, description="The asset's description.")
    kinds: list[str] | None = Field(
        default=None,
        description="Kinds shown in the UI besides 'ray'; name where the table lives "
        "('parquet' for a ParquetIOManager), 'deltalake' when none does.",
    )
    io_manager_key: str = Field(
        default=DEFAULT_IO_MANAGER_KEY,
        description="The IO manager that stores the asset's table (a DeltaIOManager, "
        "ParquetIOManager or SqlIOManager) and whose storage_options read Delta and Parquet "
        "sources.",
    )

    @field_validator("key")
    @classmethod
    def _a_dagster_key(cls, key: str) -> str:
        """Refused here, the error names the field; refused by `dg.asset`, it would not."""
        parts = key.split("/")
        if not all(_NAME.match(part) for part in parts):
            raise ValueError(
                f"{key!r}: each '/'-separated part takes only letters, digits and underscores"
            )
        return key

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return dg.Definitions(assets=[self.build_asset()])

    def build_asset(self) -> dg.AssetsDefinition:
        """The `ray_asset` this YAML declares."""
        path = dg.AssetKey.from_user_string(self.key).path
        common: dict[str, Any] = {
            "name": path[-1],
            "key_prefix": path[:-1] or None,
            "partitions_def": self.partitions.definition() if self.partitions else None,
            "partition_column": self.partitions.column if self.partitions else None,
            "io_manager_key": self.io_manager_key,
            "kinds": set(self.kinds) if self.kinds else None,
            "group_name": self.group_name,
            "description": self.description
            or f"Rows of {self.source.describe()}, declared in YAML.",
        }
        if isinstance(self.source, AssetSource):
            return ray_asset(self._upstream_body(), ins=self._upstream_ins(self.source), **common)
        resource_keys = {self.source.resource_key} if isinstance(self.source, SqlSource) else set()
        return ray_asset(self._read_body(), required_resource_keys=resource_keys, **common)

    # ------------------------------------------------------------------ the asset's body
    def _read_body(self) -> Any:
        """The body of a table source: read the run's partitions of the table."""
        source, io_manager_key = self.source, self.io_manager_key
        read_columns, kept_columns = self._read_columns(), self._kept_columns()
        conditions = list(self.row_filter or [])
        partition_column = self.partitions.column if self.partitions else None

        def read_table(context: dg.AssetExecutionContext) -> Any:
            from ray_assets.io_slices import instance_of, slice_to_write

            partitions_def = context.assets_def.partitions_def
            partition_slice = slice_to_write(
                context.asset_key,
                partitions_def,
                list(context.partition_keys) if partitions_def is not None else None,
                partition_column,
                instance_of(context),
            )
            request = ReadRequest(
                context, io_manager_key, read_columns, partition_slice, conditions
            )
            return _projected(source.read(request), kept_columns)

        return read_table

    def _upstream_body(self) -> Any:
        """The body of an `asset` source: its input arrives pruned and projected."""
        kept_columns = self._kept_columns()
        conditions = list(self.row_filter or [])

        def filter_upstream(source: Any) -> Any:  # the input named UPSTREAM_INPUT
            return _projected(filtered(source, conditions), kept_columns)

        return filter_upstream

    def _upstream_ins(self, source: AssetSource) -> dict[str, dg.AssetIn]:
        read_columns = self._read_columns()
        metadata = {"columns": read_columns} if read_columns else None
        return {UPSTREAM_INPUT: dg.AssetIn(key=source.asset_key(), metadata=metadata)}

    # ------------------------------------------------------------------ columns
    def _kept_columns(self) -> list[str] | None:
        """The asset's columns: those asked for, and the partition column a write needs."""
        if self.columns is None:
            return None
        kept = list(self.columns)
        if self.partitions and self.partitions.column not in kept:
            kept.append(self.partitions.column)
        return kept

    def _read_columns(self) -> list[str] | None:
        """The columns read: those kept and those the filter tests (dropped after it)."""
        kept = self._kept_columns()
        if kept is None:
            return None
        tested = [c.column for c in self.row_filter or [] if c.column not in kept]
        return kept + list(dict.fromkeys(tested))


def _projected(dataset: "ray.data.Dataset", columns: list[str] | None) -> "ray.data.Dataset":
    """Only `columns`, in their order (the filter's extra columns dropped)."""
    return dataset if columns is None else dataset.select_columns(columns)
