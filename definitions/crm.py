"""The CRM the customer dimension is read from, and where daily revenue is exported: a SQL database.

Locally it is a SQLite file next to the tables (`<table root>/crm.db`; `RAY_ASSETS_CRM_URL`
names another database), which stands in for a real CRM: the first run that needs it fills its
`crm_customers` table from the deterministic generator. On a cluster it is the database of
`RAY_ASSETS_CRM_URL` (PostgreSQL, say), which the CRM owns: it is never filled from here.
"""

from __future__ import annotations

import dagster as dg
import numpy as np
from pydantic import Field

from definitions.generator import CUSTOMERS_SCHEMA, make_customers
from definitions.sources import OrderSource
from ray_assets.connectors.sql import SqlDatabase

CRM_CUSTOMERS = "crm_customers"
"""The CRM's customer table: the columns of `CUSTOMERS_SCHEMA`."""


class Crm(dg.ConfigurableResource):
    """The CRM database, and whether this deployment may create its customer table."""

    database: SqlDatabase
    seed_if_missing: bool = Field(
        default=False,
        description="Create `crm_customers` from the generator when it is missing (the local "
        "stand-in CRM); never on a real CRM.",
    )

    def ensure_seeded(self, order_source: OrderSource) -> None:
        """Fill the stand-in CRM once; a real one is left alone."""
        if self.seed_if_missing and not self.database.has_table(CRM_CUSTOMERS):
            self.seed(order_source)

    def seed(self, order_source: OrderSource) -> int:
        """Replace the CRM's customers with the generator's; the rows written."""
        customers = make_customers(
            {"id": np.arange(order_source.customers)}, seed=order_source.seed
        )
        return self.database.write(customers.cast(CUSTOMERS_SCHEMA), CRM_CUSTOMERS)
