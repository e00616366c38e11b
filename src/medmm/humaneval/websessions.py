"""Server-side login sessions: the cookie carries a random token, the database says if it is alive.

Logout, the idle timeout, the absolute timeout and disabling a user end a session for every copy
of its cookie (a copied cookie used to keep working for 12 hours after logout).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from medmm.humaneval.models import User, WebSession, utcnow

IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
TOUCH_EVERY = timedelta(seconds=30)  # last_seen is written at most this often (one write per save otherwise)


@dataclass(frozen=True)
class Timeouts:
    """Idle and absolute lifetime of a session."""

    idle: timedelta = IDLE_TIMEOUT
    absolute: timedelta = ABSOLUTE_TIMEOUT


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(session: Session, user: User, address: str | None) -> str:
    """Open a session for ``user``; returns the token to put in the (signed) cookie."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(WebSession(token_hash=_digest(token), user_id=user.id, created_at=now, last_seen=now,
                           address=(address or "")[:64] or None))
    return token


def alive_user(session: Session, token: str | None, timeouts: Timeouts, now: datetime | None = None) -> User | None:
    """The user of a live session, or None (unknown, ended, timed out, or the user is disabled).

    A session found timed out is marked ended; a live one has its ``last_seen`` refreshed.
    """
    if not isinstance(token, str) or not token or len(token) > 128:
        return None
    row = session.scalar(select(WebSession).where(WebSession.token_hash == _digest(token)))
    if row is None or row.ended_at is not None:
        return None
    now = now or utcnow()
    user = session.get(User, row.user_id)
    if user is None or user.disabled or now - row.last_seen > timeouts.idle or now - row.created_at > timeouts.absolute:
        row.ended_at = now
        session.commit()
        return None
    if now - row.last_seen > TOUCH_EVERY:
        row.last_seen = now
        session.commit()
    return user


def end(session: Session, token: str | None) -> None:
    """End the session of ``token`` (logout)."""
    if isinstance(token, str) and token:
        session.execute(update(WebSession).where(WebSession.token_hash == _digest(token),
                                                 WebSession.ended_at.is_(None)).values(ended_at=utcnow()))


def end_all(session: Session, user_id: int) -> int:
    """End every live session of a user (disabled account); returns how many were ended."""
    result = session.execute(update(WebSession).where(WebSession.user_id == user_id, WebSession.ended_at.is_(None))
                             .values(ended_at=utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
