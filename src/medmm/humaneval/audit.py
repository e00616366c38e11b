"""Append-only, hash-chained audit trail: who did what, when, from where.

Every entry stores the SHA-256 of the previous entry's hash and its own fields, so editing,
removing or reordering an entry breaks the chain (`verify_chain`). The database refuses UPDATE
and DELETE on ``he_audit`` (triggers of migration 0003); print the chain head now and then
(``medmm humaneval audit``) and keep it elsewhere to detect a rewrite of the whole chain.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from medmm.humaneval.models import AuditEvent, AuditHead, utcnow

GENESIS = "0" * 64
# The actions written by the app and the CLI (documented in docs/humaneval.md).
ACTIONS = (
    "login", "login_failed", "login_throttled", "logout", "session_ended",
    "user_created", "user_disabled", "user_enabled", "role_granted",
    "study_created", "seed_chosen", "rating_created", "rating_changed",
    "export", "study_locked", "study_unlocked", "study_unblinded",
)
CSV_COLUMNS = ("seq", "at", "username", "address", "action", "study_id", "detail", "prev_hash", "hash")


def _entry_hash(prev_hash: str, seq: int, at: datetime, username: str | None, address: str | None,
                action: str, study_id: int | None, detail: str | None) -> str:
    fields = [seq, at.isoformat(timespec="microseconds"), username, address, action, study_id, detail]
    payload = prev_hash + json.dumps(fields, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class Slot:
    """The sequence number and previous hash reserved for the next entry (see `reserve`)."""

    seq: int
    prev_hash: str


def reserve(session: Session) -> Slot:
    """Take the chain's lock (held to the end of the transaction) and the next entry's place.

    Call it before reading values an entry will record (a rating's old values), so no other
    writer changes them in between; then pass the slot to `append`.
    """
    row = session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1)
                          .returning(AuditHead.seq, AuditHead.last_hash)).one()
    return Slot(row.seq, row.last_hash)


def append(session: Session, action: str, *, username: str | None, address: str | None = None,
           study_id: int | None = None, detail: dict[str, Any] | None = None, slot: Slot | None = None) -> AuditEvent:
    """Add one entry in the caller's transaction (committed or rolled back with the change it records).

    The head row is updated first (`reserve`): that write lock (SQLite) or row lock (PostgreSQL) is
    held to the end of the transaction, so concurrent appenders take turns and the chain stays linear.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    head = slot or reserve(session)
    at = utcnow()
    text = json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str) if detail else None
    digest = _entry_hash(head.prev_hash, head.seq, at, username, address, action, study_id, text)
    event = AuditEvent(seq=head.seq, at=at, username=username, address=address, action=action,
                       study_id=study_id, detail=text, prev_hash=head.prev_hash, hash=digest)
    session.add(event)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_hash=digest))
    return event


@dataclass
class ChainCheck:
    """Result of `verify_chain`: ok, number of entries checked, the first problem, the head hash."""

    ok: bool
    n_entries: int
    problem: str | None
    head_hash: str


def verify_chain(session: Session) -> ChainCheck:
    """Recompute every entry's hash in sequence order; the head row must match the last entry."""
    prev, expected_seq, n = GENESIS, 1, 0
    for ev in session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).yield_per(1000):
        n += 1
        if ev.seq != expected_seq:
            return ChainCheck(False, n, f"entry {expected_seq} is missing (next is {ev.seq})", prev)
        if ev.prev_hash != prev:
            return ChainCheck(False, n, f"entry {ev.seq}: previous hash does not match", prev)
        if _entry_hash(prev, ev.seq, ev.at, ev.username, ev.address, ev.action, ev.study_id, ev.detail) != ev.hash:
            return ChainCheck(False, n, f"entry {ev.seq}: content does not match its hash", prev)
        prev, expected_seq = ev.hash, expected_seq + 1
    head = session.execute(select(AuditHead.seq, AuditHead.last_hash).where(AuditHead.id == 1)).one_or_none()
    if head is None or head.seq != n or head.last_hash != prev:
        return ChainCheck(False, n, "chain head does not match the last entry (entries removed at the end?)", prev)
    return ChainCheck(True, n, None, prev)


def events(session: Session, study_id: int | None = None) -> list[dict[str, Any]]:
    """Audit entries as dicts in sequence order, optionally only those of one study."""
    q = select(AuditEvent).order_by(AuditEvent.seq)
    if study_id is not None:
        q = q.where(AuditEvent.study_id == study_id)
    return [{c: getattr(ev, c) for c in CSV_COLUMNS} for ev in session.scalars(q)]


def events_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text of `events` rows (cells starting with = + - @ prefixed with ', as in exports)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    w.writeheader()
    for row in rows:
        w.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
