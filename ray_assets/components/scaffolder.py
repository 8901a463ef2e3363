"""What `dg scaffold defs ray_assets.components.RayTableAsset <path>` writes: a `defs.yaml` that
loads as it is, with every optional attribute shown commented out.

Dagster's default scaffolder writes `attributes: {}`, which fails to load (a key and a source
are required) and says nothing of what else the component takes.
"""

from __future__ import annotations

import dagster as dg
from pydantic import BaseModel, Field

_TEMPLATE = """\
type: {type_name}

attributes:
  # the asset's key; '/' separates a prefix (sales/{name})
  key: {name}
  # where the rows come from, by type: delta (uri), parquet (path, partitioning),
  # sql (table, resource_key, shard_column) or asset (key of an asset of this code location)
  source:
    type: delta
    uri: {delta_uri}
  # columns: [order_id, order_date, amount]
  # row_filter:
  #   - {{column: amount, op: ">", value: 0}}
  # partitions: {{start_date: "2024-01-01", column: order_date}}
  # group_name: sales
  # description: What the rows are.
  # kinds: [parquet]  # where the IO manager keeps the table; deltalake when not given
  # io_manager_key: delta_io_manager
"""


class RayTableAssetScaffoldParams(BaseModel):
    """`dg scaffold defs ray_assets.components.RayTableAsset <path> --delta-uri data/orders`."""

    delta_uri: str | None = Field(
        default=None,
        description="The Delta table the asset reads; a placeholder to edit when not given.",
    )


class RayTableAssetScaffolder(dg.Scaffolder[RayTableAssetScaffoldParams]):
    """Writes `defs.yaml` (or, with `--format python`, Dagster's `component.py`)."""

    @classmethod
    def get_scaffold_params(cls) -> type[RayTableAssetScaffoldParams]:
        return RayTableAssetScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[RayTableAssetScaffoldParams]) -> None:
        from dagster.components import scaffold_component

        if request.scaffold_format != "yaml" or request.append:
            scaffold_component(request, {})
            return
        name = request.target_path.name
        text = _TEMPLATE.format(
            type_name=request.type_name,
            name=name,
            delta_uri=request.params.delta_uri or f"data/{name}_source",
        )
        (request.target_path / "defs.yaml").write_text(text)
