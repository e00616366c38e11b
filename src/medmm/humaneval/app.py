"""The FastAPI web app: login, rating pages with autosave, admin, owner and monitor pages, exports.

Model identity never reaches a rater's or monitor's browser: pages and URLs use an assignment's
random ``public_id`` and show outputs as "A"/"B" (left/right from the study's blinding secret).
Routes live in ``routes_rater.py`` and ``routes_admin.py``; what they share in ``web.py``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from medmm.humaneval import security, websessions
from medmm.humaneval.db import open_db
from medmm.humaneval.web import HERE, UPLOAD_LIMIT, LoginError, Web

BODY_LIMIT = 256 * 1024  # a rating form is a few kB; a 1 MB comment is refused outright
COOKIE_MAX_AGE = 12 * 3600  # the cookie's own lifetime; the server-side session decides validity


def create_app(
    db: str,
    *,
    secret_key: str | None = None,
    https_only: bool = False,
    image_roots: Sequence[str | Path] = (),
    timeouts: websessions.Timeouts | None = None,
    hashing_limit: int | None = None,
) -> FastAPI:
    """Build the app for database ``db`` (SQLAlchemy URL or SQLite path); migrates on start.

    ``secret_key`` signs session cookies (default: $MEDMM_HUMANEVAL_SECRET or a random key; the
    sessions themselves live in the database). ``image_roots``: the only folders images may be
    served from or studies created with (none: no images). ``https_only`` marks cookies Secure and
    sends HSTS. ``timeouts``: idle (30 min) and absolute (12 h) session lifetime.
    ``hashing_limit``: concurrent password hashes (default: half the CPU cores, 1 to 4).
    """
    from medmm.humaneval.routes_admin import add_admin_routes
    from medmm.humaneval.routes_rater import add_rater_routes
    from medmm.humaneval.throttle import HashingSlots

    engine, factory = open_db(db)
    roots = tuple(Path(r).expanduser().resolve() for r in image_roots)
    for root in roots:
        if not root.is_dir():
            raise ValueError(f"images root {root} is not a folder")
    web = Web(sessions=factory, timeouts=timeouts or websessions.Timeouts(), image_roots=roots,
              https_only=https_only, hashing=HashingSlots(hashing_limit))
    secret = secret_key or os.environ.get("MEDMM_HUMANEVAL_SECRET") or secrets.token_urlsafe(48)
    app = FastAPI(title="medmm human evaluation", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    app.state.sessions = factory
    app.state.web = web
    extra_headers = dict([security.HSTS_HEADER]) if https_only else {}

    app.add_middleware(security.SecurityHeadersMiddleware, headers={**security.SECURITY_HEADERS, **extra_headers})
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="medmm_he_session",
        max_age=COOKIE_MAX_AGE,
        same_site="strict",
        https_only=https_only,
    )
    app.add_middleware(
        security.BodyLimitMiddleware,
        limit=BODY_LIMIT,
        large_limit=UPLOAD_LIMIT,
        large_paths=("/admin/studies",),
        extra_headers=extra_headers,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(LoginError)
    async def _login_needed(request: Request, _exc: LoginError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "not logged in"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # JSON for the autosave API, a readable page for people using the forms.
        headers = getattr(exc, "headers", None)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
        response = web.render(request, "error.html", status=exc.status_code, status_code=exc.status_code,
                              detail=exc.detail)
        if headers:
            response.headers.update(headers)
        return response

    add_rater_routes(app, web)
    add_admin_routes(app, web)
    return app
