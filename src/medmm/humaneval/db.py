"""Engine, migrations and the rating upsert, for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from medmm.errors import BadInputError
from medmm.humaneval import audit
from medmm.humaneval.models import Assignment, Rating, utcnow

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(db: str) -> str:
    """Accept a SQLAlchemy URL or a bare file path (taken as a SQLite file)."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def make_engine(db: str) -> Engine:
    """Create an engine; SQLite gets WAL mode, a busy timeout and enforced foreign keys."""
    url = normalize_url(db)
    if url.startswith("sqlite"):
        if url not in ("sqlite://", "sqlite:///:memory:"):
            path = Path(url.split(":///", 1)[1])
            if not path.parent.is_dir():
                raise BadInputError(path, "folder of the SQLite database does not exist")
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            pool_size=20,
            max_overflow=20,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets raters read while one writes; busy_timeout makes writers queue, not fail.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=20)


_MIGRATE_LOCK = threading.Lock()  # alembic's `context` proxy is process-global, not thread-safe


def migrate(engine: Engine) -> str:
    """Bring the schema to the newest Alembic revision; returns that revision id.

    Safe when several servers start at once on a new database: PostgreSQL takes an advisory lock,
    SQLite a write lock (BEGIN IMMEDIATE) before Alembic reads the current revision.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    on_file = engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")
    target = _sqlite_immediate_engine(engine) if on_file else engine
    try:
        with _MIGRATE_LOCK, target.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7246551)"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        if target is not engine:
            target.dispose()
    return ScriptDirectory.from_config(cfg).get_current_head() or ""


def _sqlite_immediate_engine(engine: Engine) -> Engine:
    # The SQLAlchemy recipe for explicit SQLite transactions: driver autocommit off, BEGIN ourselves.
    mig = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(mig, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    @event.listens_for(mig, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return mig


def open_db(db: str, *, run_migrations: bool = True) -> tuple[Engine, sessionmaker[Session]]:
    """Engine plus session factory for ``db``; migrates the schema first by default."""
    engine = make_engine(db)
    if run_migrations:
        migrate(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)


def upsert_rating(session: Session, assignment_id: int, values: dict[str, Any]) -> None:
    """Insert or update the one rating of an assignment, touching only the given fields.

    A database-level ``ON CONFLICT`` upsert on the unique ``assignment_id`` keeps exactly one row
    even when two saves of the same item race (double click, retried fetch, two tabs).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - other backends: read-then-write inside the transaction
        row = session.scalar(select(Rating).where(Rating.assignment_id == assignment_id))
        if row is None:
            row = Rating(assignment_id=assignment_id, completed=False)
            session.add(row)
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = utcnow()
        return
    now = utcnow()
    insert_values = {"assignment_id": assignment_id, "completed": False, "updated_at": now, **values}
    stmt = insert(Rating).values(**insert_values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Rating.assignment_id], set_={**values, "updated_at": now}
    )
    session.execute(stmt)


def save_rating(session: Session, assignment: Assignment, values: dict[str, Any], *, username: str,
                address: str | None) -> dict[str, Any]:
    """Upsert ``values`` into an assignment's rating and log old and new values in the audit trail.

    Returns the fields that changed; when none did, nothing is written or logged and the
    transaction is rolled back (it holds the audit slot reserved first). The audit
    chain's lock is taken first, so the old values read are the ones this write replaces.
    """
    slot = audit.reserve(session)
    cols = [Rating.__table__.c[k] for k in values]  # core select: no stale ORM identity map
    old = session.execute(select(Rating.__table__.c.id, *cols).where(Rating.assignment_id == assignment.id)).first()
    before = dict(old._mapping) if old is not None else None
    changed = {k: v for k, v in values.items() if before is None or before[k] != v}
    if before is not None and not changed:
        session.rollback()  # give the reserved place back: nothing to record
        return {}
    upsert_rating(session, assignment.id, values)
    audit.append(
        session, "rating_created" if before is None else "rating_changed", username=username, address=address,
        study_id=assignment.study_id,
        detail={"assignment": assignment.public_id, "new": changed,
                **({"old": {k: before[k] for k in changed}} if before is not None else {})}, slot=slot,
    )
    return changed
