"""Database tables of the human-evaluation app (SQLAlchemy 2 ORM).

The schema is created and upgraded by the Alembic scripts in ``migrations/``; these classes must
stay in step with them (a test compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

LIKERT_FIELDS = ("correctness", "completeness", "usefulness")
ERROR_CATEGORIES = (
    "false_finding",
    "missing_finding",
    "wrong_location",
    "wrong_severity",
    "false_comparison",
    "omitted_comparison",
)
# ReXVal counts each error category separately for clinically significant and insignificant errors.
ERROR_FIELDS = tuple(f"err_{sig}_{cat}" for sig in ("sig", "insig") for cat in ERROR_CATEGORIES)
PREFERENCES = ("left", "right", "tie")
MAX_COMMENT = 5000
MAX_ERROR_COUNT = 50


def utcnow() -> datetime:
    """Timezone-aware now; stored as naive UTC so SQLite and PostgreSQL agree."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of every humaneval table."""


class User(Base):
    """An admin or a rater; passwords are argon2 hashes."""

    __tablename__ = "he_user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # A disabled account cannot log in and its sessions are ended (admin page).
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    # Base32 TOTP secret: when set, login also asks for the 6-digit code (second factor).
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class Study(Base):
    """One evaluation: a set of cases, the systems compared on them, and the raters."""

    __tablename__ = "he_study"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    design: Mapped[str] = mapped_column(String(16), nullable=False)  # single | pairwise
    seed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Blinding: per-rater order and left/right come from this server-side secret (256 random bits,
    # medmm.humaneval.blinding). `seeded` studies used the public `seed` instead: reproducible, but a
    # rater who knows the seed can recompute the blinding (studies made before schema 0003 are seeded).
    blind_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seeded: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    locked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # no rating changes after
    unblinded_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # system names released
    images_root: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Raters see each output's explanation (the model's reported evidence) under it. Off by
    # default: in a pairwise study, differently shaped evidence can tell the systems apart.
    show_explanations: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    systems: Mapped[list[System]] = relationship(
        back_populates="study", cascade="all, delete-orphan", order_by="System.id"
    )
    cases: Mapped[list[Case]] = relationship(
        back_populates="study", cascade="all, delete-orphan", order_by="Case.id"
    )


class System(Base):
    """A model whose predictions are rated; its name never reaches a rater's browser."""

    __tablename__ = "he_system"
    __table_args__ = (UniqueConstraint("study_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("he_study.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    study: Mapped[Study] = relationship(back_populates="systems")


class Case(Base):
    """One input (image and/or question) that every system answered."""

    __tablename__ = "he_case"
    __table_args__ = (UniqueConstraint("study_id", "source_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("he_study.id", ondelete="CASCADE"), nullable=False)
    source_id: Mapped[str] = mapped_column(String(256), nullable=False)
    question: Mapped[str | None] = mapped_column(Text, nullable=True)
    reference: Mapped[str | None] = mapped_column(Text, nullable=True)
    image_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    study: Mapped[Study] = relationship(back_populates="cases")


class Output(Base):
    """A system's prediction for a case, with any automated metric columns (JSON text)."""

    __tablename__ = "he_output"
    __table_args__ = (UniqueConstraint("case_id", "system_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("he_case.id", ondelete="CASCADE"), nullable=False)
    system_id: Mapped[int] = mapped_column(ForeignKey("he_system.id", ondelete="CASCADE"), nullable=False)
    prediction: Mapped[str] = mapped_column(Text, nullable=False)
    metrics_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    explanation: Mapped[str | None] = mapped_column(Text, nullable=True)  # medmm.humaneval.explanations
    case: Mapped[Case] = relationship()
    system: Mapped[System] = relationship()


class Assignment(Base):
    """One rating task given to one rater.

    ``public_id`` is the only handle the browser sees (random, unguessable); ``position`` is the
    rater's own seeded order; for pairwise studies ``right_output_id`` is set and which output is
    left was randomised for this rater.
    """

    __tablename__ = "he_assignment"
    __table_args__ = (
        UniqueConstraint("rater_id", "study_id", "position"),
        Index("ix_he_assignment_rater_study", "rater_id", "study_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    study_id: Mapped[int] = mapped_column(ForeignKey("he_study.id", ondelete="CASCADE"), nullable=False)
    rater_id: Mapped[int] = mapped_column(ForeignKey("he_user.id", ondelete="CASCADE"), nullable=False)
    case_id: Mapped[int] = mapped_column(ForeignKey("he_case.id", ondelete="CASCADE"), nullable=False)
    left_output_id: Mapped[int] = mapped_column(ForeignKey("he_output.id", ondelete="CASCADE"), nullable=False)
    right_output_id: Mapped[int | None] = mapped_column(
        ForeignKey("he_output.id", ondelete="CASCADE"), nullable=True
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    case: Mapped[Case] = relationship()
    rater: Mapped[User] = relationship()
    left_output: Mapped[Output] = relationship(foreign_keys=[left_output_id])
    right_output: Mapped[Output | None] = relationship(foreign_keys=[right_output_id])


class Rating(Base):
    """The (single) rating of an assignment; autosave upserts it field by field."""

    __tablename__ = "he_rating"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("he_assignment.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    correctness: Mapped[int | None] = mapped_column(Integer, nullable=True)
    completeness: Mapped[int | None] = mapped_column(Integer, nullable=True)
    usefulness: Mapped[int | None] = mapped_column(Integer, nullable=True)
    preference: Mapped[str | None] = mapped_column(String(8), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    completed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    assignment: Mapped[Assignment] = relationship()


# The twelve ReXVal error-count columns, added in a loop so the list above is the one source.
for _name in ERROR_FIELDS:
    setattr(Rating, _name, Column(_name, Integer, nullable=True))
del _name


STUDY_ROLES = ("owner", "monitor")  # raters are the users with assignments; admins are global


class StudyRole(Base):
    """A user's role in one study: ``owner`` (runs it: progress, lock, unblinding, export) or
    ``monitor`` (progress and agreement, never system identities)."""

    __tablename__ = "he_study_role"
    __table_args__ = (UniqueConstraint("study_id", "user_id", "role"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("he_study.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("he_user.id", ondelete="CASCADE"), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    user: Mapped[User] = relationship()


class WebSession(Base):
    """A login session kept on the server: the cookie holds only a random token whose SHA-256 is
    ``token_hash``, so logging out, a timeout or disabling the user ends it for every copy."""

    __tablename__ = "he_session"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("he_user.id", ondelete="CASCADE"), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditEvent(Base):
    """One entry of the append-only audit trail (database triggers refuse UPDATE and DELETE).

    ``hash`` = SHA-256 of the previous entry's hash and this entry's fields
    (medmm.humaneval.audit), so an edited, removed or reordered entry breaks the chain.
    ``study_id`` has no foreign key: the trail outlives what it describes.
    """

    __tablename__ = "he_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    username: Mapped[str | None] = mapped_column(String(64), nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    study_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditHead(Base):
    """The single row holding the chain's last sequence number and hash. Appending first updates
    this row, which serialises appenders on both SQLite and PostgreSQL."""

    __tablename__ = "he_audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    last_hash: Mapped[str] = mapped_column(String(64), nullable=False)
