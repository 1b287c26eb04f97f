"""Alembic migrations for the record tables (shipped inside the package)."""
