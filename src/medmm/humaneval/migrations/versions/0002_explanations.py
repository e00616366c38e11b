"""Explanations: each output may carry the model's reported evidence, shown to raters per study.

Revision ID: 0002_explanations
Revises: 0001_initial
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_explanations"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (nullable, or with a server default) works on SQLite and PostgreSQL alike.
    op.add_column("he_output", sa.Column("explanation", sa.Text, nullable=True))
    op.add_column("he_study", sa.Column("show_explanations", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("he_study") as batch:
        batch.drop_column("show_explanations")
    with op.batch_alter_table("he_output") as batch:
        batch.drop_column("explanation")
