"""Alembic migration scripts of the state database, run by ``database.migrating`` (``nebctl db upgrade``)."""
