"""Alembic migration scripts of the humaneval schema (run programmatically by ``db.migrate``)."""
