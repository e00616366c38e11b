"""Routes for everyone: login (throttled, optional TOTP), logout, a rater's studies and items."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ConfigDict, Field, ValidationError, create_model
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from medmm.humaneval import security, websessions
from medmm.humaneval.db import save_rating
from medmm.humaneval.images import image_response
from medmm.humaneval.models import (
    ERROR_CATEGORIES,
    ERROR_FIELDS,
    LIKERT_FIELDS,
    MAX_COMMENT,
    MAX_ERROR_COUNT,
    Assignment,
    Rating,
    Study,
    StudyRole,
    User,
)
from medmm.humaneval.studies import USERNAME_RE, study_progress
from medmm.humaneval.throttle import HashingBusyError
from medmm.humaneval.web import PUBLIC_ID_RE, DbId, Web

LIKERT_LABELS = {
    "correctness": "Correctness",
    "completeness": "Completeness",
    "usefulness": "Clinical usefulness",
}
# What a save may contain: strict types, ranges, no unknown fields.
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
    # no NUL (PostgreSQL text cannot hold it)
    comment=(str | None, Field(default=None, max_length=MAX_COMMENT, pattern=r"^[^\x00]*$")),
    **_error_fields,
)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err.get("loc", ()))
    return f"{where}: {err.get('msg')}"


# ASCII digits only: int() would also take other Unicode digits and raise on '²' or '--1'.
FORM_INT_RE = re.compile(r"^-?[0-9]{1,6}$")


def add_rater_routes(app: FastAPI, web: Web) -> None:
    """Login, logout, home, resume, rating pages, autosave API and the image route."""

    def owned_assignment(s: Session, user: User, public_id: str) -> Assignment:
        a = None
        if PUBLIC_ID_RE.match(public_id):
            a = s.scalar(select(Assignment).where(Assignment.public_id == public_id))
        # The same 404 for "not yours" and "does not exist": nothing to learn by probing ids.
        if a is None or a.rater_id != user.id:
            raise HTTPException(404, "no such item")
        return a

    def writable(s: Session, a: Assignment) -> None:
        study = s.get(Study, a.study_id)
        if study is not None and study.locked_at is not None:
            raise HTTPException(409, "this study is locked: ratings can no longer be changed")

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
        return web.render(request, "login.html")

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await web.read_form(request)
        web.check_csrf(request, form)
        username = str(form.get("username") or "")[:64]
        password = str(form.get("password") or "")[:1024]
        code = str(form.get("code") or "").strip()[:16]
        address = web.address(request)
        wait = web.throttle.retry_after(username, address)
        if wait:
            if web.throttle.first_refusal(username, address):
                await run_in_threadpool(_log_only, web, request, "login_throttled", username, {"retry_after": wait})
            response = web.render(request, "login.html", status=429,
                                  error=f"Too many failed logins: try again in {wait} seconds.")
            response.headers["Retry-After"] = str(wait)
            return response

        def work() -> Response:
            with web.db() as s:
                user = None
                if USERNAME_RE.match(username):  # anything else cannot be an account (and may hold NUL)
                    user = s.scalar(select(User).where(User.username == username))
                ok = security.verify_password(user.password_hash if user else None, password)
                reason = None if ok and user is not None else "password"
                if reason is None and user is not None and user.disabled:
                    reason = "disabled"
                if reason is None and user is not None and user.totp_secret and not _totp_ok(user.totp_secret, code):
                    reason = "second factor"
                if reason is not None or user is None:
                    web.throttle.failed(username, address)
                    web.log(s, request, "login_failed", username if USERNAME_RE.match(username) else None,
                            detail={"reason": reason, **({} if USERNAME_RE.match(username) else {"user": username})})
                    s.commit()
                    return web.render(request, "login.html", status=401, error="Wrong username or password"
                                      + (" or code." if code else "."))
                web.throttle.succeeded(username)
                websessions.end(s, request.session.get("sid"))  # a login on top of a session replaces it
                token = websessions.start(s, user, address)
                web.log(s, request, "login", user)
                s.commit()
                # A fresh session (and CSRF token) after login: no session fixation.
                request.session.clear()
                request.session["sid"] = token
                security.csrf_token(request.session)
                return RedirectResponse("/admin" if user.is_admin else "/", status_code=303)

        try:
            async with web.hashing.slot():
                return await run_in_threadpool(work)
        except HashingBusyError:
            response = web.render(request, "login.html", status=503, error="The server is busy: try again soon.")
            response.headers["Retry-After"] = "5"
            return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        web.require_session(request)
        form = await web.read_form(request)
        web.check_csrf(request, form)

        def work() -> None:
            with web.db() as s:
                user = websessions.alive_user(s, request.session.get("sid"), web.timeouts)
                websessions.end(s, request.session.get("sid"))
                if user is not None:
                    web.log(s, request, "logout", user)
                s.commit()

        await run_in_threadpool(work)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # ---------------------------------------------------------------- rater pages
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        with web.db() as s:
            user = web.current_user(request, s)
            study_ids = s.scalars(
                select(Assignment.study_id).where(Assignment.rater_id == user.id).distinct()
            ).all()
            studies = []
            for sid in sorted(study_ids):
                study = s.get(Study, sid)
                prog = next(p for p in study_progress(s, sid) if p["rater"] == user.username)
                studies.append({"id": sid, "name": study.name if study else sid,
                                "locked": bool(study and study.locked_at), **prog})
            roles = s.execute(select(Study, StudyRole.role).join(StudyRole, StudyRole.study_id == Study.id)
                              .where(StudyRole.user_id == user.id).order_by(Study.id)).all()
            return web.render(request, "home.html", user=user, studies=studies,
                              roles=[{"study": st, "role": role} for st, role in roles])

    @app.get("/studies/{study_id}/next")
    def resume(request: Request, study_id: DbId) -> Response:
        with web.db() as s:
            user = web.current_user(request, s)
            a = next_open(s, user, study_id)
            if a is None:
                return RedirectResponse("/?done=1", status_code=303)
            return RedirectResponse(f"/rate/{a.public_id}", status_code=303)

    def rating_context(s: Session, a: Assignment) -> dict[str, Any]:
        study = s.get(Study, a.study_id)
        rating = s.scalar(select(Rating).where(Rating.assignment_id == a.id).execution_options(populate_existing=True))
        values = {}
        if rating is not None:
            for f in (*LIKERT_FIELDS, *ERROR_FIELDS, "preference", "comment"):
                values[f] = getattr(rating, f)
        total = s.query(Assignment).filter_by(rater_id=a.rater_id, study_id=a.study_id).count()
        shown = [a.left_output] + ([a.right_output] if a.right_output is not None else [])
        # the model's reported evidence under each output, only in studies made to show it
        explanations = [o.explanation if study is not None and study.show_explanations else None for o in shown]
        return {
            "a": a,
            "design": study.design if study else "single",
            "locked": bool(study and study.locked_at),
            "case": a.case,
            "outputs": [o.prediction for o in shown],
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
        with web.db() as s:
            user = web.current_user(request, s)
            a = owned_assignment(s, user, public_id)
            return web.render(request, "rate.html", user=user, **rating_context(s, a))

    @app.post("/rate/{public_id}")
    async def rate_submit(request: Request, public_id: str) -> Response:
        """No-JS path (and the "Save and next" button): the whole form at once."""
        web.require_session(request)
        form = await web.read_form(request)
        web.check_csrf(request, form)

        def work() -> Response:
            with web.db() as s:
                user = web.current_user(request, s)
                a = owned_assignment(s, user, public_id)
                writable(s, a)
                design = s.get(Study, a.study_id).design  # type: ignore[union-attr]
                raw: dict[str, Any] = {}
                for f in (*LIKERT_FIELDS, *ERROR_FIELDS):
                    v = form.get(f)
                    if v not in (None, ""):
                        if not isinstance(v, str) or not FORM_INT_RE.match(v.strip()):
                            raise HTTPException(422, f"{f} must be a whole number")
                        raw[f] = int(v.strip())
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
                if not missing:
                    values["completed"] = True
                save_rating(s, a, values, username=user.username, address=web.address(request))
                s.commit()
                if missing:
                    ctx = rating_context(s, a)
                    return web.render(request, "rate.html", status=422, user=user,
                                      error="Please answer: " + ", ".join(missing), **ctx)
                nxt = next_open(s, user, a.study_id)
                target = f"/rate/{nxt.public_id}" if nxt else "/?done=1"
                return RedirectResponse(target, status_code=303)

        return await run_in_threadpool(work)

    @app.post("/api/rate/{public_id}")
    async def rate_api(request: Request, public_id: str) -> Response:
        """Autosave: a JSON object with any subset of the rating fields."""
        web.require_session(request)
        web.check_csrf(request)
        try:
            payload = json.loads(await request.body())
        except (ValueError, RecursionError) as exc:  # bad JSON, 100,000-deep nesting, 5,000-digit ints
            raise HTTPException(400, "body must be a JSON object") from exc
        if not isinstance(payload, dict):
            raise HTTPException(400, "body must be a JSON object")

        def work() -> Response:
            with web.db() as s:
                user = web.current_user(request, s)
                a = owned_assignment(s, user, public_id)
                writable(s, a)
                try:
                    values = RatingUpdate(**payload).model_dump(exclude_unset=True)
                except (ValidationError, TypeError) as exc:
                    detail = _first_error(exc) if isinstance(exc, ValidationError) else "unexpected field"
                    raise HTTPException(422, detail) from exc
                if values:
                    save_rating(s, a, values, username=user.username, address=web.address(request))
                    s.commit()
                return JSONResponse({"saved": sorted(values)})

        return await run_in_threadpool(work)

    @app.get("/image/{public_id}")
    def image(request: Request, public_id: str) -> Response:
        with web.db() as s:
            user = web.current_user(request, s)
            a = owned_assignment(s, user, public_id)
            path, root = a.case.image_path, s.get(Study, a.study_id).images_root  # type: ignore[union-attr]
        # Served only from inside the study's images folder AND a folder allowed at server start.
        if not path or not root or not Path(path).resolve().is_relative_to(Path(root).resolve()) \
                or not web.image_allowed(Path(path)) or not Path(path).is_file():
            raise HTTPException(404, "no image")
        return image_response(Path(path))


def _log_only(web: Web, request: Request, action: str, username: str, detail: dict[str, Any]) -> None:
    with web.db() as s:
        name = username if USERNAME_RE.match(username) else None
        web.log(s, request, action, name, detail=detail if name else {**detail, "user": username})
        s.commit()


def _totp_ok(secret: str, code: str) -> bool:
    try:
        import pyotp
    except ImportError as exc:  # pragma: no cover - the humaneval extra installs it
        raise RuntimeError("this account has a second factor: pip install 'medmm[humaneval]' (pyotp)") from exc
    return bool(code.isdigit()) and pyotp.TOTP(secret).verify(code, valid_window=1)
