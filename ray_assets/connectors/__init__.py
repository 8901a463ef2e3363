"""Connectors to systems outside the lake: one subpackage per system, none importing another.

- `ray_assets.connectors.sql`: PostgreSQL (and Redshift, which speaks its protocol), SQLite and
  any SQLAlchemy URL.
- `ray_assets.connectors.snowflake`: Snowflake.
- `ray_assets.connectors.bigquery`: BigQuery.

What they share about partition slices is in `ray_assets.connectors.slices`. Each loads its
driver only when used, so an install without a connector's extra imports nothing of it.
"""
