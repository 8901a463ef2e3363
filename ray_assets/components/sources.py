"""Where a YAML-declared Ray asset reads its rows: a Delta table, Parquet files, a SQL table,
or another asset of the code location.

Each source is a small model (what the YAML says) with one `read` that gives the lazy Dataset of
one run's rows, pushing the run's partitions, the projection and as much of the row filter as
the reader takes down into the read: file pruning from the Delta log, pyarrow filters in the
Parquet reader, bound parameters in SQL. An `asset` source is not read here: it becomes the
asset's input, loaded by the IO manager like any other (`RayTableAsset`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import dagster as dg
from pydantic import BaseModel, Field, TypeAdapter, field_validator

from ray_assets.components.row_filter import Condition, expression, split_equalities

if TYPE_CHECKING:
    import ray.data

    from ray_assets.partition_slice import PartitionSlice


@dataclass(frozen=True)
class ReadRequest:
    """What one run of the asset asks of its source."""

    context: dg.AssetExecutionContext
    io_manager_key: str
    columns: Sequence[str] | None
    """The columns to read (those the asset keeps and those its filter tests), None for all."""
    partition_slice: PartitionSlice
    conditions: Sequence[Condition]

    @property
    def io_manager(self) -> Any:
        """The IO manager that stores the asset's table."""
        return getattr(self.context.resources, self.io_manager_key)

    def storage_options(self) -> dict[str, str]:
        """The asset's IO manager's object-store options: tables elsewhere are read with the
        credentials its own tables are written with."""
        return dict(getattr(self.io_manager, "storage_options", None) or {})


def filtered(dataset: ray.data.Dataset, conditions: Sequence[Condition]) -> ray.data.Dataset:
    """`dataset` limited to the rows that meet every condition (Arrow evaluates them in the tasks)."""
    condition = expression(conditions)
    return dataset if condition is None else dataset.filter(expr=condition)


def _without_credentials(uri: str) -> str:
    """Credentials in a YAML file end up in version control and in the UI: they belong in the
    IO manager's storage_options, as `dg.EnvVar`s."""
    from ray_assets.storage.filesystem import redact_uri

    if redact_uri(uri) != uri:
        raise ValueError(
            f"give the URI without credentials or query ({redact_uri(uri)}); credentials go in "
            "the IO manager's storage_options"
        )
    return uri


class DeltaSource(dg.Model):
    """A Delta table, written by ray_assets or elsewhere."""

    type: Literal["delta"]
    uri: str = Field(
        description="The table's URI: a local path, s3://, az://, abfss:// or gs://. It is read "
        "with the asset's IO manager's storage_options. A partitioned asset reads the table's "
        "partitions of the run, so the table must be partitioned by the asset's partition column."
    )

    @field_validator("uri")
    @classmethod
    def _uri_without_credentials(cls, uri: str) -> str:
        return _without_credentials(uri)

    def describe(self) -> str:
        return f"the Delta table {self.uri}"

    def read(self, request: ReadRequest) -> ray.data.Dataset:
        from ray_assets.storage.delta_store import DeltaStore

        io_manager = request.io_manager
        store = (
            io_manager.external_store(self.uri)
            if hasattr(io_manager, "external_store")
            else DeltaStore(self.uri, storage_options=request.storage_options())
        )
        dataset = store.read(request.partition_slice, request.columns)
        return filtered(dataset, request.conditions)


class ParquetSource(dg.Model):
    """Parquet files under a folder (searched recursively) or one file."""

    type: Literal["parquet"]
    path: str = Field(description="A folder or file: a local path, s3://, az:// or gs://.")
    partitioning: Literal["hive"] | None = Field(
        default=None,
        description="'hive' reads `day=2024-01-01/` folder names as a `day` column.",
    )

    @field_validator("path")
    @classmethod
    def _path_without_credentials(cls, path: str) -> str:
        return _without_credentials(path)

    def describe(self) -> str:
        return f"the Parquet files at {self.path}"

    def read(self, request: ReadRequest) -> ray.data.Dataset:
        from ray_assets.reads import read_parquet_files

        storage_options = request.storage_options()
        row_filter = expression(request.conditions)
        pushed = None if row_filter is None else row_filter.to_pyarrow()
        partitions = self._partition_filter(request.partition_slice, storage_options)
        if partitions is not None:
            pushed = partitions if pushed is None else pushed & partitions
        return read_parquet_files(
            self.path,
            columns=request.columns,
            filter=pushed,
            partitioning=self.partitioning,
            storage_options=storage_options or None,
        )

    def _partition_filter(
        self, partition_slice: PartitionSlice, storage_options: dict[str, str]
    ) -> Any:
        """The run's partitions as a pyarrow filter, its values typed as the files' column (a
        `date32` column compares with dates): that takes the files' schema, one listing more."""
        if not partition_slice.is_partitioned:
            return None
        from ray_assets.storage.parquet_source import list_parquet_files

        _, schema, _ = list_parquet_files(self.path, storage_options, self.partitioning)
        return partition_slice.to_pyarrow_expression(schema)


class SqlSource(dg.Model):
    """A table of a SQL database, read through a `SqlDatabase` resource."""

    type: Literal["sql"]
    table: str = Field(description="The table (`schema.table` allowed).")
    resource_key: str = Field(
        description="The key of the `ray_assets.connectors.sql.SqlDatabase` resource that "
        "reaches the database."
    )
    shard_column: str | None = Field(
        default=None,
        description="A numeric or date column to split the read on, into one task per CPU of "
        "the Ray cluster; one task when not given.",
    )

    def describe(self) -> str:
        return f"the SQL table {self.table}"

    def read(self, request: ReadRequest) -> ray.data.Dataset:
        from ray_assets.connectors.sql import SqlDatabase

        database = getattr(request.context.resources, self.resource_key)
        if not isinstance(database, SqlDatabase):
            raise TypeError(
                f"source.resource_key '{self.resource_key}' is a {type(database).__name__}; it "
                "must name a ray_assets.connectors.sql.SqlDatabase resource"
            )
        where, rest = split_equalities(request.conditions)  # equalities run in the database
        dataset = database.read(
            self.table,
            columns=request.columns,
            where=where,
            partition=request.partition_slice if request.partition_slice.is_partitioned else None,
            shard_column=self.shard_column,
        )
        return filtered(dataset, rest)


class AssetSource(dg.Model):
    """Another asset of the code location, loaded by its IO manager (its table, pruned to the
    run's partitions and projected), so the asset graph shows where the rows come from."""

    type: Literal["asset"]
    key: str = Field(description="The upstream asset's key, '/'-separated: 'sales/orders'.")

    def describe(self) -> str:
        return f"the asset {self.key}"

    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey.from_user_string(self.key)


TableSource = DeltaSource | ParquetSource | SqlSource | AssetSource
"""A source, told apart by its `type`: delta, parquet, sql or asset."""

SOURCE_SCHEMA = Annotated[TableSource, Field(discriminator="type")]
"""What the YAML's `source` must be: told apart by `type` first, so that a mistake is reported
for that type alone (`source.delta.uri: Field required`), not once per type it is not."""


def _resolve_source(context: dg.ResolutionContext, source: BaseModel) -> TableSource:
    """The `source` of the YAML with its templates (`{{ env('TABLE_ROOT') }}/orders`) rendered:
    Dagster renders templates inside Resolvable models only, and these are plain ones."""
    rendered = context.resolve_value(source.model_dump(exclude_unset=True))
    return TypeAdapter(SOURCE_SCHEMA).validate_python(rendered)


ResolvedSource = Annotated[
    TableSource, dg.Resolver(_resolve_source, model_field_type=SOURCE_SCHEMA)
]
"""The type of a component's `source` field: validated as `SOURCE_SCHEMA`, then rendered."""
