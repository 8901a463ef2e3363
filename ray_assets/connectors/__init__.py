"""Connectors to systems outside the lake: one subpackage per system, none importing another.

`ray_assets.connectors.sql`: PostgreSQL (and Redshift, which speaks its protocol), SQLite and any
SQLAlchemy URL. Each loads its driver only when used, so an install without a connector's extra
imports nothing of it.
"""
