"""Alembic environment: always given a live connection by ``medmm.humaneval.db.migrate``."""

from alembic import context

from medmm.humaneval.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through the alembic CLI
    raise RuntimeError("run migrations through medmm.humaneval.db.migrate(engine)")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
