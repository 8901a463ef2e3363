"""The functions the reference pipeline's Ray tasks run, in a module that imports only pyarrow.

A Ray worker imports the module of every function it runs, so where a transform lives decides
what each new worker imports before its first task: here, pyarrow (already loaded by Ray Data);
in `definitions/assets.py`, Dagster, ray_assets and every asset, about a second per worker on a
small machine, paid again by every run (Ray starts workers per run). Keep task code in modules
like this one.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from definitions.generator import CUSTOMERS_SCHEMA

EXPORT_COLUMN_TYPES = {"order_id": pa.string(), "order_date": pa.string(), "amount": pa.float64()}
"""What the order system exports; CSV would otherwise guess (a date, an integer amount)."""


def price_orders(orders: pa.Table) -> pa.Table:
    """Adds the signed order amount: returns count against revenue."""
    gross = pc.round(
        pc.multiply(pc.cast(orders["quantity"], pa.float64()), orders["unit_price"]), 2
    )
    returned = pc.equal(orders["status"], "returned")
    amount = pc.if_else(returned, pc.negate(gross), gross)
    return orders.append_column("amount", amount).append_column("is_return", returned)


def as_customer_types(table: pa.Table) -> pa.Table:
    """The dimension's own types: SQLite, for one, hands dates back as text."""
    return table.cast(CUSTOMERS_SCHEMA)


def round_money(table: pa.Table) -> pa.Table:
    """Money to cents and the order count as an integer, as the revenue table declares them."""
    for name in ("revenue", "avg_order_value"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.round(table[name], 2))
    return table.cast(
        pa.schema(
            [pa.field(f.name, pa.int64() if f.name == "orders" else f.type) for f in table.schema]
        )
    )


def read_exports(batch: pa.Table) -> pa.Table:
    """The rows of the export files named in `batch`, with the export's column types."""
    tables = []
    for path in batch.column("path").to_pylist():
        if path.endswith(".csv"):
            types = pa_csv.ConvertOptions(column_types=EXPORT_COLUMN_TYPES)
            tables.append(pa_csv.read_csv(path, convert_options=types))
        else:
            tables.append(pq.read_table(path))
    schema = pa.schema(EXPORT_COLUMN_TYPES)
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])
