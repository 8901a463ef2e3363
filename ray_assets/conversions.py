"""Small converters between what an asset returns or asks for and a Ray Dataset.

The store only knows Datasets; each other in-memory type is one converter here (the shape of
Dagster's type handlers), not a branch inside the store. Data moves as Arrow: pandas only when
the user asks for pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import ray.data


def to_dataset(obj: Any, what: str) -> ray.data.Dataset:
    """A Dataset for an asset's output: a Dataset as is, a pyarrow Table or pandas DataFrame converted."""
    import ray.data

    if isinstance(obj, ray.data.Dataset):
        return obj
    if isinstance(obj, pa.Table):
        return ray.data.from_arrow(obj)
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency of ray[data]
        pd = None
    if pd is not None and isinstance(obj, pd.DataFrame):
        return ray.data.from_arrow(pa.Table.from_pandas(obj, preserve_index=False))
    raise TypeError(
        f"{what}: expected a ray.data.Dataset, pyarrow.Table or pandas.DataFrame to store, "
        f"got {type(obj).__name__}."
    )


def from_dataset(dataset: ray.data.Dataset, target: Any) -> Any:
    """What an input annotated with `target` receives: a lazy Dataset unless it asks for a table."""
    if target is pa.Table:
        import ray

        tables = [t for t in ray.get(dataset.to_arrow_refs()) if t.num_columns]
        if tables:
            return pa.concat_tables(tables, promote_options="default")
        return dataset.schema().base_schema.empty_table()
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and target is pd.DataFrame:
        return dataset.to_pandas()
    return dataset


def empty_input(schema: pa.Schema, columns: Sequence[str] | None, target: Any) -> Any:
    """An input with no rows, of `schema` (projected to `columns`), in the type `target` asks for."""
    import ray.data

    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns if c in schema.names])
    empty = schema.empty_table()
    if target is pa.Table:
        return empty
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and target is pd.DataFrame:
        return empty.to_pandas()
    return ray.data.from_arrow(empty)
