"""What every route of the web app shares: sessions, roles, CSRF, forms, rendering, audit."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from medmm.humaneval import audit, security, websessions
from medmm.humaneval.models import Assignment, Study, StudyRole, User
from medmm.humaneval.throttle import HashingSlots, LoginThrottle

HERE = Path(__file__).resolve().parent
UPLOAD_LIMIT = 64 * 1024 * 1024
MAX_DB_ID = 2**63 - 1  # ids beyond a signed 64-bit integer answer 422, never reach the database
DbId = Annotated[int, PathParam(ge=1, le=MAX_DB_ID)]
PUBLIC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # secrets.token_urlsafe alphabet


class LoginError(Exception):
    """Raised to send an unauthenticated request to the login page (or 401 for the API)."""


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["visible"] = security.visible_bidi
    return templates


@dataclass
class Web:
    """Per-app state and helpers, handed to the route modules."""

    sessions: sessionmaker[Session]
    timeouts: websessions.Timeouts = field(default_factory=websessions.Timeouts)
    image_roots: tuple[Path, ...] = ()
    https_only: bool = False
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    hashing: HashingSlots = field(default_factory=HashingSlots)
    templates: Jinja2Templates = field(default_factory=_templates)

    def db(self) -> Session:
        """A new database session (use as a context manager)."""
        return self.sessions()

    @staticmethod
    def address(request: Request) -> str:
        """The client's address (set from X-Forwarded-For by uvicorn only for trusted proxies)."""
        return request.client.host if request.client else "unknown"

    def current_user(self, request: Request, s: Session, *, admin: bool = False) -> User:
        """The user of the request's live server-side session, else LoginError (403 if ``admin``
        is required and the user is not one)."""
        user = websessions.alive_user(s, request.session.get("sid"), self.timeouts)
        if user is None:
            request.session.clear()
            raise LoginError()
        if admin and not user.is_admin:
            raise HTTPException(403, "admins only")
        return user

    @staticmethod
    def require_session(request: Request) -> None:
        """Cheap refusal before reading a body: no uploads parsed for anonymous clients."""
        if not isinstance(request.session.get("sid"), str):
            raise LoginError()

    @staticmethod
    def check_csrf(request: Request, form: Any = None) -> None:
        """Origin (if sent) must match Host; the session's CSRF token must come with the request."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlparse(origin).netloc != request.headers.get("host"):
            raise HTTPException(403, "cross-origin request refused")
        supplied = request.headers.get(security.CSRF_HEADER)
        if supplied is None and form is not None:
            value = form.get(security.CSRF_FORM_FIELD)
            supplied = value if isinstance(value, str) else None
        if not security.csrf_ok(request.session, supplied):
            raise HTTPException(403, "missing or wrong CSRF token")

    @staticmethod
    async def read_form(request: Request) -> Any:
        """The parsed form; malformed bodies answer 400, oversized ones 413 (BodyLimitMiddleware)."""
        try:
            form = await request.form(max_files=20, max_fields=200, max_part_size=UPLOAD_LIMIT)
        except security.TooLarge:
            raise
        except Exception as exc:  # malformed multipart bodies
            raise HTTPException(400, f"malformed form: {type(exc).__name__}") from exc
        for key, value in form.multi_items():
            if "\x00" in key or (isinstance(value, str) and "\x00" in value):
                raise HTTPException(422, "form fields must not contain NUL characters")
        return form

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        """Render a template with the session's CSRF token."""
        ctx.setdefault("user", None)
        ctx["csrf"] = security.csrf_token(request.session)
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)

    def log(self, s: Session, request: Request, action: str, user: User | str | None, *,
            study_id: int | None = None, detail: dict[str, Any] | None = None) -> None:
        """Append an audit entry for this request (in ``s``'s transaction)."""
        name = user.username if isinstance(user, User) else user
        audit.append(s, action, username=name, address=self.address(request), study_id=study_id, detail=detail)

    # ------------------------------------------------------------------ studies and roles
    @staticmethod
    def roles(s: Session, user: User, study_id: int) -> set[str]:
        """The user's roles in a study: admin (global), owner, monitor, rater."""
        found = set(s.scalars(select(StudyRole.role).where(StudyRole.study_id == study_id,
                                                           StudyRole.user_id == user.id)))
        if user.is_admin:
            found.add("admin")
        if s.scalar(select(Assignment.id).where(Assignment.study_id == study_id,
                                                Assignment.rater_id == user.id).limit(1)) is not None:
            found.add("rater")
        return found

    def study_for(self, s: Session, user: User, study_id: int, allowed: Sequence[str]) -> Study:
        """The study if ``user`` holds one of the ``allowed`` roles in it; 404 if absent, 403 if not."""
        study = s.get(Study, study_id)
        if study is None:
            raise HTTPException(404, "no such study")
        if not self.roles(s, user, study_id) & set(allowed):
            raise HTTPException(403, "you have no role in this study that allows this")
        return study

    def image_allowed(self, path: Path) -> bool:
        """True if ``path`` (resolved) lies inside a folder allowed when the server started."""
        real = path.resolve()
        return any(real.is_relative_to(root) for root in self.image_roots)

