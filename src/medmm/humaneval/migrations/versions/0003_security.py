"""Security for ethics boards: blinding secret, server-side sessions, disabled users, TOTP, study
roles, lock and unblinding, and the append-only hash-chained audit trail.

Revision ID: 0003_security
Revises: 0002_explanations

Studies that exist before this revision were blinded with the public seed: they are marked
``seeded`` (the audit command and admin pages say so) and keep their assignments unchanged.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_security"
down_revision = "0002_explanations"
branch_labels = None
depends_on = None

GENESIS = "0" * 64

_SQLITE_TRIGGERS = [
    ("CREATE TRIGGER he_audit_no_update BEFORE UPDATE ON he_audit "
    "BEGIN SELECT RAISE(ABORT, 'he_audit is append-only'); END"),
    ("CREATE TRIGGER he_audit_no_delete BEFORE DELETE ON he_audit "
    "BEGIN SELECT RAISE(ABORT, 'he_audit is append-only'); END"),
]
_PG_TRIGGERS = [
    ("CREATE FUNCTION he_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'he_audit is append-only'; END $$"),
    ("CREATE TRIGGER he_audit_no_change BEFORE UPDATE OR DELETE ON he_audit "
    "FOR EACH ROW EXECUTE FUNCTION he_audit_append_only()"),
    ("CREATE TRIGGER he_audit_no_truncate BEFORE TRUNCATE ON he_audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION he_audit_append_only()"),
]


def upgrade() -> None:
    op.add_column("he_user", sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("he_user", sa.Column("totp_secret", sa.String(64), nullable=True))
    op.add_column("he_study", sa.Column("blind_secret", sa.String(64), nullable=True))
    op.add_column("he_study", sa.Column("seeded", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("he_study", sa.Column("locked_at", sa.DateTime, nullable=True))
    op.add_column("he_study", sa.Column("unblinded_at", sa.DateTime, nullable=True))
    op.execute("UPDATE he_study SET seeded = true")  # every older study was blinded by its seed
    op.create_table(
        "he_study_role",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("he_study.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("he_user.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.UniqueConstraint("study_id", "user_id", "role"),
    )
    op.create_table(
        "he_session",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("he_user.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_seen", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime, nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
    )
    op.create_index("ix_he_session_user_id", "he_session", ["user_id"])
    op.create_table(
        "he_audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False, unique=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("study_id", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_he_audit_study_id", "he_audit", ["study_id"])
    head = op.create_table(
        "he_audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "last_hash": GENESIS}])
    dialect = op.get_bind().dialect.name
    for ddl in _PG_TRIGGERS if dialect == "postgresql" else _SQLITE_TRIGGERS if dialect == "sqlite" else []:
        op.execute(ddl)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TABLE he_audit")  # drops its triggers
        op.execute("DROP FUNCTION he_audit_append_only()")
    else:
        op.drop_table("he_audit")
    for table in ("he_audit_head", "he_session", "he_study_role"):
        op.drop_table(table)
    with op.batch_alter_table("he_study") as batch:
        for col in ("unblinded_at", "locked_at", "seeded", "blind_secret"):
            batch.drop_column(col)
    with op.batch_alter_table("he_user") as batch:
        batch.drop_column("totp_secret")
        batch.drop_column("disabled")
