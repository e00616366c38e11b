"""The FastAPI web app: login, rating pages with autosave, admin pages, exports.

Model identity never reaches a rater's browser: pages and URLs use an assignment's random
``public_id`` and show outputs as "A"/"B" (left/right randomised per rater at study creation).
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import os
import secrets
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ConfigDict, Field, ValidationError, create_model
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from medmm.errors import BadInputError, MedmmError
from medmm.humaneval import security
from medmm.humaneval.db import open_db, upsert_rating
from medmm.humaneval.export import export_rows, rows_to_csv
from medmm.humaneval.models import (
    ERROR_CATEGORIES,
    ERROR_FIELDS,
    LIKERT_FIELDS,
    MAX_COMMENT,
    MAX_ERROR_COUNT,
    Assignment,
    Rating,
    Study,
    User,
)
from medmm.humaneval.studies import (
    DESIGNS,
    SYSTEM_NAME_RE,
    build_study,
    create_user,
    read_predictions,
    study_progress,
)

HERE = Path(__file__).resolve().parent
BODY_LIMIT = 256 * 1024  # a rating form is a few kB; a 1 MB comment is refused outright
UPLOAD_LIMIT = 64 * 1024 * 1024
SESSION_MAX_AGE = 12 * 3600
BROWSER_IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}
LIKERT_LABELS = {
    "correctness": "Correctness",
    "completeness": "Completeness",
    "usefulness": "Clinical usefulness",
}

_error_fields: dict[str, Any] = {
    f: (int | None, Field(default=None, ge=0, le=MAX_ERROR_COUNT)) for f in ERROR_FIELDS
}
RatingUpdate = create_model(  # type: ignore[call-overload]
    "RatingUpdate",
    __config__=ConfigDict(extra="forbid", strict=True),
    correctness=(int | None, Field(default=None, ge=1, le=5)),
    completeness=(int | None, Field(default=None, ge=1, le=5)),
    usefulness=(int | None, Field(default=None, ge=1, le=5)),
    preference=(Literal["left", "right", "tie"] | None, None),
    comment=(str | None, Field(default=None, max_length=MAX_COMMENT)),
    **_error_fields,
)


class LoginError(Exception):
    """Raised to send an unauthenticated request to the login page (or 401 for the API)."""


def create_app(db: str, *, secret_key: str | None = None, https_only: bool = False) -> FastAPI:
    """Build the app for database ``db`` (SQLAlchemy URL or SQLite path); migrates on start.

    ``secret_key`` signs session cookies; default: $MEDMM_HUMANEVAL_SECRET or a random key
    (sessions then end when the server restarts; saved ratings are unaffected).
    """
    engine, factory = open_db(db)
    secret = secret_key or os.environ.get("MEDMM_HUMANEVAL_SECRET") or secrets.token_urlsafe(48)
    app = FastAPI(title="medmm human evaluation", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    app.state.sessions = factory
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for key, value in security.SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="medmm_he_session",
        max_age=SESSION_MAX_AGE,
        same_site="strict",
        https_only=https_only,
    )
    app.add_middleware(
        security.BodyLimitMiddleware,
        limit=BODY_LIMIT,
        large_limit=UPLOAD_LIMIT,
        large_paths=("/admin/studies",),
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
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return templates.TemplateResponse(
            request, "error.html", {"status": exc.status_code, "detail": exc.detail, "user": None,
                                    "csrf": security.csrf_token(request.session)},
            status_code=exc.status_code,
        )

    # ---------------------------------------------------------------- helpers
    def db_session() -> Session:
        return factory()

    def current_user(request: Request, s: Session, *, admin: bool = False) -> User:
        uid = request.session.get("uid")
        user = s.get(User, uid) if isinstance(uid, int) else None
        # A session stays valid only while the password it was made with is current.
        if user is None or request.session.get("pwh") != _fingerprint(user.password_hash):
            request.session.clear()
            raise LoginError()
        if admin and not user.is_admin:
            raise HTTPException(403, "admins only")
        return user

    def require_session(request: Request) -> None:
        # Cheap refusal before reading a body: no uploads parsed for anonymous clients.
        if not isinstance(request.session.get("uid"), int):
            raise LoginError()

    def check_csrf(request: Request, form: Any = None) -> None:
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlparse(origin).netloc != request.headers.get("host"):
            raise HTTPException(403, "cross-origin request refused")
        supplied = request.headers.get(security.CSRF_HEADER)
        if supplied is None and form is not None:
            value = form.get(security.CSRF_FORM_FIELD)
            supplied = value if isinstance(value, str) else None
        if not security.csrf_ok(request.session, supplied):
            raise HTTPException(403, "missing or wrong CSRF token")

    async def read_form(request: Request) -> Any:
        try:
            return await request.form(max_files=20, max_fields=200, max_part_size=UPLOAD_LIMIT)
        except Exception as exc:  # malformed multipart bodies
            raise HTTPException(400, f"malformed form: {exc}") from exc

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("user", None)
        ctx["csrf"] = security.csrf_token(request.session)
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    def owned_assignment(s: Session, user: User, public_id: str) -> Assignment:
        a = s.scalar(select(Assignment).where(Assignment.public_id == public_id[:64]))
        # The same 404 for "not yours" and "does not exist": nothing to learn by probing ids.
        if a is None or a.rater_id != user.id:
            raise HTTPException(404, "no such item")
        return a

    def next_open(s: Session, user: User, study_id: int) -> Assignment | None:
        return s.scalar(
            select(Assignment)
            .outerjoin(Rating, Rating.assignment_id == Assignment.id)
            .where(Assignment.rater_id == user.id, Assignment.study_id == study_id)
            .where((Rating.id.is_(None)) | (Rating.completed.is_(False)))
            .order_by(Assignment.position)
            .limit(1)
        )

    # ---------------------------------------------------------------- login
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> HTMLResponse:
        return render(request, "login.html")

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await read_form(request)
        check_csrf(request, form)
        username = str(form.get("username") or "")[:64]
        password = str(form.get("password") or "")[:1024]

        def work() -> Response:
            with db_session() as s:
                user = s.scalar(select(User).where(User.username == username))
                ok = security.verify_password(user.password_hash if user else None, password)
                if not ok or user is None:
                    return render(request, "login.html", status=401, error="Wrong username or password.")
                # A fresh session (and CSRF token) after login: no session fixation.
                request.session.clear()
                request.session.update({"uid": user.id, "pwh": _fingerprint(user.password_hash)})
                security.csrf_token(request.session)
                return RedirectResponse("/admin" if user.is_admin else "/", status_code=303)

        return await run_in_threadpool(work)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        require_session(request)
        form = await read_form(request)
        check_csrf(request, form)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # ---------------------------------------------------------------- rater pages
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        with db_session() as s:
            user = current_user(request, s)
            study_ids = s.scalars(
                select(Assignment.study_id).where(Assignment.rater_id == user.id).distinct()
            ).all()
            studies = []
            for sid in sorted(study_ids):
                study = s.get(Study, sid)
                prog = next(p for p in study_progress(s, sid) if p["rater"] == user.username)
                studies.append({"id": sid, "name": study.name if study else sid, **prog})
            return render(request, "home.html", user=user, studies=studies)

    @app.get("/studies/{study_id}/next")
    def resume(request: Request, study_id: int) -> Response:
        with db_session() as s:
            user = current_user(request, s)
            a = next_open(s, user, study_id)
            if a is None:
                return RedirectResponse("/?done=1", status_code=303)
            return RedirectResponse(f"/rate/{a.public_id}", status_code=303)

    def rating_context(s: Session, a: Assignment) -> dict[str, Any]:
        study = s.get(Study, a.study_id)
        rating = s.scalar(select(Rating).where(Rating.assignment_id == a.id))
        values = {}
        if rating is not None:
            for f in (*LIKERT_FIELDS, *ERROR_FIELDS, "preference", "comment"):
                values[f] = getattr(rating, f)
        total = s.query(Assignment).filter_by(rater_id=a.rater_id, study_id=a.study_id).count()
        shown = [a.left_output] + ([a.right_output] if a.right_output is not None else [])
        outputs = [o.prediction for o in shown]
        # the model's reported evidence under each output, only in studies made to show it
        explanations = [o.explanation if study is not None and study.show_explanations else None for o in shown]
        return {
            "a": a,
            "design": study.design if study else "single",
            "case": a.case,
            "outputs": outputs,
            "explanations": explanations,
            "values": values,
            "completed": bool(rating and rating.completed),
            "position": a.position + 1,
            "total": total,
            "likert": LIKERT_LABELS,
            "error_categories": ERROR_CATEGORIES,
            "max_errors": MAX_ERROR_COUNT,
            "max_comment": MAX_COMMENT,
        }

    @app.get("/rate/{public_id}", response_class=HTMLResponse)
    def rate_page(request: Request, public_id: str) -> HTMLResponse:
        with db_session() as s:
            user = current_user(request, s)
            a = owned_assignment(s, user, public_id)
            return render(request, "rate.html", user=user, **rating_context(s, a))

    @app.post("/rate/{public_id}")
    async def rate_submit(request: Request, public_id: str) -> Response:
        """No-JS path (and the "Save and next" button): the whole form at once."""
        require_session(request)
        form = await read_form(request)
        check_csrf(request, form)

        def work() -> Response:
            with db_session() as s:
                user = current_user(request, s)
                a = owned_assignment(s, user, public_id)
                design = s.get(Study, a.study_id).design  # type: ignore[union-attr]
                raw: dict[str, Any] = {}
                for f in (*LIKERT_FIELDS, *ERROR_FIELDS):
                    v = form.get(f)
                    if v not in (None, ""):
                        if not isinstance(v, str) or not v.strip().lstrip("-").isdigit() or len(v) > 6:
                            raise HTTPException(422, f"{f} must be a whole number")
                        raw[f] = int(v)
                    else:
                        raw[f] = None
                pref = form.get("preference")
                raw["preference"] = pref if pref not in (None, "") else None
                comment = form.get("comment")
                raw["comment"] = comment if comment not in (None, "") else None
                try:
                    values = RatingUpdate(**raw).model_dump()
                except ValidationError as exc:
                    raise HTTPException(422, _first_error(exc)) from exc
                missing = (
                    [LIKERT_LABELS[f] for f in LIKERT_FIELDS if values[f] is None]
                    if design == "single"
                    else (["Preference"] if values["preference"] is None else [])
                )
                if design == "single":
                    values["preference"] = None
                else:
                    for f in (*LIKERT_FIELDS, *ERROR_FIELDS):
                        values[f] = None
                upsert_rating(s, a.id, values)
                s.commit()
                if missing:
                    ctx = rating_context(s, a)
                    return render(request, "rate.html", status=422, user=user,
                                  error="Please answer: " + ", ".join(missing), **ctx)
                upsert_rating(s, a.id, {"completed": True})
                s.commit()
                nxt = next_open(s, user, a.study_id)
                target = f"/rate/{nxt.public_id}" if nxt else "/?done=1"
                return RedirectResponse(target, status_code=303)

        return await run_in_threadpool(work)

    @app.post("/api/rate/{public_id}")
    async def rate_api(request: Request, public_id: str) -> Response:
        """Autosave: a JSON object with any subset of the rating fields."""
        require_session(request)
        check_csrf(request)
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPException(400, "body must be a JSON object") from exc
        if not isinstance(payload, dict):
            raise HTTPException(400, "body must be a JSON object")

        def work() -> Response:
            with db_session() as s:
                user = current_user(request, s)
                a = owned_assignment(s, user, public_id)
                try:
                    values = RatingUpdate(**payload).model_dump(exclude_unset=True)
                except (ValidationError, TypeError) as exc:
                    detail = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
                    raise HTTPException(422, detail) from exc
                if values:
                    upsert_rating(s, a.id, values)
                    s.commit()
                return JSONResponse({"saved": sorted(values)})

        return await run_in_threadpool(work)

    @app.get("/image/{public_id}")
    def image(request: Request, public_id: str) -> Response:
        with db_session() as s:
            user = current_user(request, s)
            a = owned_assignment(s, user, public_id)
            path = a.case.image_path
        if not path or not Path(path).is_file():
            raise HTTPException(404, "no image")
        return _image_response(Path(path))

    # ---------------------------------------------------------------- admin pages
    @app.get("/admin", response_class=HTMLResponse)
    def admin_home(request: Request) -> HTMLResponse:
        with db_session() as s:
            user = current_user(request, s, admin=True)
            studies = s.scalars(select(Study).order_by(Study.id)).all()
            rows = []
            for st in studies:
                prog = study_progress(s, st.id)
                rows.append({"study": st, "total": sum(p["total"] for p in prog),
                             "completed": sum(p["completed"] for p in prog)})
            users = s.scalars(select(User).order_by(User.username)).all()
            return render(request, "admin.html", user=user, studies=rows, users=users,
                          designs=DESIGNS, message=request.query_params.get("msg"))

    @app.post("/admin/users")
    async def admin_create_user(request: Request) -> Response:
        require_session(request)
        form = await read_form(request)
        check_csrf(request, form)

        def work() -> Response:
            with db_session() as s:
                current_user(request, s, admin=True)
                try:
                    create_user(s, str(form.get("username") or ""), str(form.get("password") or ""),
                                admin=form.get("is_admin") == "on")
                    s.commit()
                except BadInputError as exc:
                    raise HTTPException(422, exc.problem) from exc
            return RedirectResponse("/admin?msg=user+created", status_code=303)

        return await run_in_threadpool(work)

    @app.post("/admin/studies")
    async def admin_create_study(request: Request) -> Response:
        require_session(request)
        form = await read_form(request)
        check_csrf(request, form)
        uploads = []
        for up in form.getlist("pred"):
            if isinstance(up, str) or not up.filename:
                continue
            uploads.append((Path(up.filename).name, await up.read()))

        def work() -> Response:
            with db_session() as s:
                current_user(request, s, admin=True)
                systems = []
                for filename, data in uploads:
                    sname = filename.split(".")[0]
                    if not SYSTEM_NAME_RE.match(sname):
                        raise HTTPException(422, f"{filename}: system name {sname!r} must match "
                                            f"{SYSTEM_NAME_RE.pattern}")
                    try:
                        records = read_predictions(filename, text=data.decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        raise HTTPException(422, f"{filename}: not UTF-8 text") from exc
                    except BadInputError as exc:
                        raise HTTPException(422, str(exc)) from exc
                    systems.append((sname, filename, records))
                raters = [r.strip() for r in str(form.get("raters") or "").split(",") if r.strip()]
                seed = str(form.get("seed") or "0")
                images_root = str(form.get("images_root") or "").strip() or None
                # Uploaded files have no folder of their own: image paths must stay inside a
                # folder the admin names, never resolve against the server's working directory.
                if images_root is None and any(r.image for _, _, recs in systems for r in recs):
                    raise HTTPException(422, "the predictions name images: give the images folder")
                try:
                    study = build_study(
                        s, str(form.get("name") or "").strip(), systems, str(form.get("design") or ""),
                        raters, images_root=images_root,
                        seed=int(seed) if seed.isdigit() and len(seed) < 10 else 0,
                        show_explanations=form.get("show_explanations") == "1",
                    )
                    s.commit()
                except MedmmError as exc:
                    s.rollback()
                    raise HTTPException(422, str(exc)) from exc
                return RedirectResponse(f"/admin/studies/{study.id}", status_code=303)

        return await run_in_threadpool(work)

    @app.get("/admin/studies/{study_id}", response_class=HTMLResponse)
    def admin_study(request: Request, study_id: int) -> HTMLResponse:
        with db_session() as s:
            user = current_user(request, s, admin=True)
            study = s.get(Study, study_id)
            if study is None:
                raise HTTPException(404, "no such study")
            return render(request, "study.html", user=user, study=study,
                          systems=[x.name for x in study.systems], n_cases=len(study.cases),
                          progress=study_progress(s, study_id))

    @app.get("/admin/studies/{study_id}/export.{fmt}")
    def admin_export(request: Request, study_id: int, fmt: str) -> Response:
        with db_session() as s:
            current_user(request, s, admin=True)
            study = s.get(Study, study_id)
            if study is None or fmt not in ("csv", "json"):
                raise HTTPException(404, "no such export")
            rows = export_rows(s, study.id)
        fname = f"{_safe_filename(study.name)}_ratings.{fmt}"
        disp = {"Content-Disposition": f'attachment; filename="{fname}"'}
        if fmt == "csv":
            return Response(rows_to_csv(rows), media_type="text/csv; charset=utf-8", headers=disp)
        return Response(json.dumps(rows, indent=1), media_type="application/json", headers=disp)

    return app


def _fingerprint(password_hash: str) -> str:
    # The session cookie is signed, not encrypted: store a digest, never part of the hash itself.
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err.get("loc", ()))
    return f"{where}: {err.get('msg')}"


def _safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "study"


def _image_response(path: Path) -> Response:
    """Serve browser-native images as they are; convert others (TIFF, 16-bit PNG...) to PNG."""
    if path.suffix.lower() in BROWSER_IMAGE_TYPES:
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(path.read_bytes(), media_type=media)
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGB") if im.mode in ("P", "CMYK") else _to_8bit(im)
            buf = io.BytesIO()
            im.save(buf, format="PNG")
    except OSError as exc:
        raise HTTPException(415, "image format cannot be shown") from exc
    return Response(buf.getvalue(), media_type="image/png")


def _to_8bit(im: Any) -> Any:
    import numpy as np
    from PIL import Image

    arr = np.asarray(im, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) * 255 if hi > lo else arr * 0
    return Image.fromarray(arr.astype(np.uint8))
