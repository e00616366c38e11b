"""Login abuse: per-account and per-address backoff, and a bound on concurrent password hashing.

State lives in the server process (one `LoginThrottle` per app). Several server processes behind
one proxy each keep their own counts, so an attacker gets at most that many times the budget.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio

FREE_FAILURES_ACCOUNT = 5  # failures before the backoff starts, per username
FREE_FAILURES_ADDRESS = 20  # per client address (many accounts from one place)
BASE_DELAY_S = 1.0
MAX_DELAY_S = 15 * 60.0
FORGET_AFTER_S = 24 * 3600.0  # a failure older than this no longer counts


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0
    reported_until: float = 0.0  # the block already written to the audit trail
    last: float = field(default_factory=time.monotonic)


class LoginThrottle:
    """Exponential backoff after repeated failures: 1 s, 2 s, 4 s ... up to 15 min.

    `retry_after` says how long a login for (username, address) must wait (0: go ahead); the
    caller answers 429 with ``Retry-After`` without checking the password, so a blocked attempt
    costs no hashing. A success clears the account's count (not the address's).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, _Record] = {}
        self._addresses: dict[str, _Record] = {}

    def retry_after(self, username: str, address: str) -> int:
        """Seconds to wait before (username, address) may try again; 0 if allowed now."""
        now = self._clock()
        with self._lock:
            waits = [r.blocked_until - now for r in (self._accounts.get(username.lower()),
                                                     self._addresses.get(address)) if r is not None]
        wait = max(waits, default=0.0)
        return math.ceil(wait) if wait > 0 else 0

    def first_refusal(self, username: str, address: str) -> bool:
        """True once per block: only the first refused attempt is written to the audit trail, so a
        flood of blocked attempts cannot flood the (serialised) audit chain."""
        with self._lock:
            recs = [r for r in (self._accounts.get(username.lower()), self._addresses.get(address))
                    if r is not None and r.blocked_until > self._clock()]
            first = any(r.reported_until < r.blocked_until for r in recs)
            for r in recs:
                r.reported_until = r.blocked_until
        return first

    def failed(self, username: str, address: str) -> None:
        """Count a failed login for the account and the address."""
        now = self._clock()
        with self._lock:
            self._bump(self._accounts, username.lower(), FREE_FAILURES_ACCOUNT, now)
            self._bump(self._addresses, address, FREE_FAILURES_ADDRESS, now)
            if len(self._accounts) + len(self._addresses) > 100_000:
                self._forget(now)

    def succeeded(self, username: str) -> None:
        """Clear the account's failures after a correct password."""
        with self._lock:
            self._accounts.pop(username.lower(), None)

    @staticmethod
    def _bump(table: dict[str, _Record], key: str, free: int, now: float) -> None:
        rec = table.get(key)
        if rec is None or now - rec.last > FORGET_AFTER_S:
            rec = table[key] = _Record()
        rec.failures += 1
        rec.last = now
        if rec.failures >= free:
            rec.blocked_until = now + min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (rec.failures - free))

    def _forget(self, now: float) -> None:
        for table in (self._accounts, self._addresses):
            for key in [k for k, r in table.items() if now - r.last > FORGET_AFTER_S or r.blocked_until < now]:
                del table[key]


class HashingBusyError(Exception):
    """No password-hashing slot became free in time (the server answers 503 with Retry-After)."""


class HashingSlots:
    """At most ``limit`` argon2 computations at once (each takes 64 MiB and a core for ~0.5 s).

    Waiting happens in the event loop (polling a non-blocking semaphore), so queued logins hold no
    worker thread: rater saves keep their threads while a login flood waits here.
    """

    def __init__(self, limit: int | None = None, max_wait_s: float = 10.0) -> None:
        self.limit = limit or max(1, min(4, (os.cpu_count() or 2) // 2))
        self.max_wait_s = max_wait_s
        self._sem = threading.BoundedSemaphore(self.limit)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one hashing slot; raises HashingBusyError after ``max_wait_s``."""
        deadline = time.monotonic() + self.max_wait_s
        pause = 0.01
        while not self._sem.acquire(blocking=False):
            if time.monotonic() > deadline:
                raise HashingBusyError()
            # Backing off to 0.2 s keeps 40 waiting logins to ~200 wake-ups a second in the event loop.
            await anyio.sleep(pause)
            pause = min(0.2, pause * 2)
        try:
            yield
        finally:
            self._sem.release()
