"""Passwords (argon2, policy), CSRF tokens, request-size limits, security headers, visible bidi."""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (t=3, 64 MiB, p=4)
# Verifying against this keeps the time of a login with an unknown username equal to a wrong password.
_dummy_hash: str | None = None
CSRF_SESSION_KEY = "csrf"
CSRF_FORM_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def set_password_cost(time_cost: int, memory_cost_kib: int, parallelism: int = 1) -> None:
    """Change the argon2 cost of NEW hashes (tests use a cheap one; existing hashes keep theirs)."""
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism)
    _dummy_hash = None


def hash_password(password: str) -> str:
    """argon2id hash of ``password`` (salted, with the library's recommended cost)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; constant work whether or not the user exists."""
    global _dummy_hash
    if password_hash is None and _dummy_hash is None:
        _dummy_hash = _hasher.hash("medmm-dummy-password")
    try:
        return _hasher.verify(password_hash or _dummy_hash, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


MIN_PASSWORD = 12
MAX_PASSWORD = 1024
COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent / "common_passwords.txt"


@functools.cache
def _common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(x for x in lines if x and not x.startswith("#"))


def password_problem(password: str, username: str) -> str | None:
    """Why ``password`` is not acceptable for ``username`` (None when it is).

    Length 12 to 1024, not the username (in any case), not a common password from the
    bundled list, also once trailing digits and symbols are removed ("password12345!").
    """
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters"
    low = password.lower()
    if username and username.lower() == low:
        return "password must not be the username"
    common = _common_passwords()
    stem = re.sub(r"[\W\d_]+$", "", low)
    if low in common or (len(stem) >= 6 and stem in common) or len(set(low)) < 4:
        return "password is too common (found in a list of leaked passwords)"
    return None


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token, created on first use (synchronizer-token pattern)."""
    token = session.get(CSRF_SESSION_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_SESSION_KEY] = token
    return token


def csrf_ok(session: MutableMapping[str, Any], supplied: str | None) -> bool:
    """True if ``supplied`` equals the session's token (constant-time compare)."""
    expected = session.get(CSRF_SESSION_KEY)
    return bool(expected and supplied and secrets.compare_digest(str(expected), str(supplied)))


ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class BodyLimitMiddleware:
    """Refuse request bodies above a size limit with 413, before any parsing.

    Checks Content-Length up front and also counts streamed bytes, so a chunked upload cannot
    slip past the limit. ``large_paths`` (prefixes) get ``large_limit`` (predictions uploads).
    """

    def __init__(self, app: ASGIApp, limit: int, large_limit: int, large_paths: tuple[str, ...],
                 extra_headers: dict[str, str] | None = None):
        self.app, self.limit, self.large_limit, self.large_paths = app, limit, large_limit, large_paths
        self.headers = {**SECURITY_HEADERS, **(extra_headers or {})}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.large_limit if path.startswith(self.large_paths) else self.limit
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or len(length) > 18 or int(length) > limit):
            await _plain(send, 413, b"request body too large", self.headers)
            return
        seen = 0
        started = False

        async def guarded_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _plain(send, 413, b"request body too large", self.headers)


class SecurityHeadersMiddleware:
    """Add ``headers`` to every HTTP response that does not set them itself (pure ASGI: no task
    group around the app, so exceptions reach BodyLimitMiddleware as they are)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]):
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *[(k, v) for k, v in self.headers if k not in present]]}
            await send(message)

        await self.app(scope, receive, with_headers)


class _TooLarge(Exception):
    """Raised from ``receive`` once a body passes the limit; handlers must let it through."""


TooLarge = _TooLarge


async def _plain(send: Callable, status: int, body: bytes, extra: dict[str, str]) -> None:
    # Replies made here skip the app's header middleware: give them the same security headers.
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


SECURITY_HEADERS = {
    # No inline scripts anywhere: the CSRF token reaches JS through a <meta> tag.
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; "
    "style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
HSTS_HEADER = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")

# Bidirectional-text controls (Trojan Source, CVE-2021-42574) and invisible direction marks: shown
# as visible code points so a right-to-left override cannot reorder what a rater reads.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible_bidi(text: Any) -> Any:
    """Replace bidi control characters in ``text`` by a visible ``[U+202E]`` tag (Jinja filter)."""
    if not isinstance(text, str):
        return text
    return _BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)
