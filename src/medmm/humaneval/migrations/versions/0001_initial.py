"""Initial humaneval schema: users, studies, systems, cases, outputs, assignments, ratings.

Revision ID: 0001_initial
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

_ERROR_CATEGORIES = (
    "false_finding",
    "missing_finding",
    "wrong_location",
    "wrong_severity",
    "false_comparison",
    "omitted_comparison",
)


def upgrade() -> None:
    op.create_table(
        "he_user",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "he_study",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("design", sa.String(16), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("images_root", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "he_system",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("he_study.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.UniqueConstraint("study_id", "name"),
    )
    op.create_table(
        "he_case",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("he_study.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source_id", sa.String(256), nullable=False),
        sa.Column("question", sa.Text, nullable=True),
        sa.Column("reference", sa.Text, nullable=True),
        sa.Column("image_path", sa.Text, nullable=True),
        sa.UniqueConstraint("study_id", "source_id"),
    )
    op.create_table(
        "he_output",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("he_case.id", ondelete="CASCADE"), nullable=False),
        sa.Column("system_id", sa.Integer, sa.ForeignKey("he_system.id", ondelete="CASCADE"), nullable=False),
        sa.Column("prediction", sa.Text, nullable=False),
        sa.Column("metrics_json", sa.Text, nullable=True),
        sa.UniqueConstraint("case_id", "system_id"),
    )
    op.create_table(
        "he_assignment",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("public_id", sa.String(64), nullable=False, unique=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("he_study.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rater_id", sa.Integer, sa.ForeignKey("he_user.id", ondelete="CASCADE"), nullable=False),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("he_case.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "left_output_id", sa.Integer, sa.ForeignKey("he_output.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "right_output_id", sa.Integer, sa.ForeignKey("he_output.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.UniqueConstraint("rater_id", "study_id", "position"),
    )
    op.create_index("ix_he_assignment_rater_study", "he_assignment", ["rater_id", "study_id"])
    error_columns = [
        sa.Column(f"err_{sig}_{cat}", sa.Integer, nullable=True)
        for sig in ("sig", "insig")
        for cat in _ERROR_CATEGORIES
    ]
    op.create_table(
        "he_rating",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "assignment_id",
            sa.Integer,
            sa.ForeignKey("he_assignment.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("correctness", sa.Integer, nullable=True),
        sa.Column("completeness", sa.Integer, nullable=True),
        sa.Column("usefulness", sa.Integer, nullable=True),
        sa.Column("preference", sa.String(8), nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("completed", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        *error_columns,
    )


def downgrade() -> None:
    for table in ("he_rating", "he_assignment", "he_output", "he_case", "he_system", "he_study", "he_user"):
        op.drop_table(table)
