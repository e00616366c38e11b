"""Routes of admins, study owners and monitors: users, studies, roles, lock, unblinding, exports.

Who may do what (per study; admins everywhere):
  owner   -- study page with system names and progress, grant roles, lock/unlock, unblind, export
  monitor -- progress and agreement with systems as "system 1", "system 2" (no identities)
Exports carry system names only after the study was unblinded (an explicit, logged act).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from medmm.errors import BadInputError, MedmmError
from medmm.humaneval import websessions
from medmm.humaneval.agreement import agreement_report
from medmm.humaneval.blinding import SEED_WARNING
from medmm.humaneval.export import blind_rows, export_rows, rows_to_csv
from medmm.humaneval.models import STUDY_ROLES, Study, StudyRole, User, utcnow
from medmm.humaneval.studies import (
    DESIGNS,
    SYSTEM_NAME_RE,
    build_study,
    create_user,
    grant_role,
    read_predictions,
    study_progress,
)
from medmm.humaneval.web import DbId, Web

MANAGE = ("admin", "owner")
OVERSEE = ("admin", "owner", "monitor")


def add_admin_routes(app: FastAPI, web: Web) -> None:
    """Admin home, users, study creation, study pages, roles, lock, unblinding, export, monitor."""

    async def form_work(request: Request, handler: Any, **params: Any) -> Response:
        """A POST: session, form, CSRF, then ``handler(request, form, **params)`` in a worker thread."""
        web.require_session(request)
        form = await web.read_form(request)
        web.check_csrf(request, form)
        return await run_in_threadpool(lambda: handler(request, form, **params))

    @app.get("/admin", response_class=HTMLResponse)
    def admin_home(request: Request) -> HTMLResponse:
        with web.db() as s:
            user = web.current_user(request, s, admin=True)
            rows = []
            for st in s.scalars(select(Study).order_by(Study.id)).all():
                prog = study_progress(s, st.id)
                rows.append({"study": st, "total": sum(p["total"] for p in prog),
                             "completed": sum(p["completed"] for p in prog)})
            users = s.scalars(select(User).order_by(User.username)).all()
            return web.render(request, "admin.html", user=user, studies=rows, users=users, designs=DESIGNS,
                              message=request.query_params.get("msg"), seed_warning=SEED_WARNING,
                              image_roots=[str(r) for r in web.image_roots])

    def create_user_work(request: Request, form: Any) -> Response:
        with web.db() as s:
            admin = web.current_user(request, s, admin=True)
            try:
                create_user(s, str(form.get("username") or ""), str(form.get("password") or ""),
                            admin=form.get("is_admin") == "on", actor=admin.username, address=web.address(request))
                s.commit()
            except BadInputError as exc:
                raise HTTPException(422, exc.problem) from exc
        return RedirectResponse("/admin?msg=user+created", status_code=303)

    @app.post("/admin/users")
    async def admin_create_user(request: Request) -> Response:
        return await form_work(request, create_user_work)

    def set_disabled(request: Request, form: Any, user_id: int, disabled: bool) -> Response:
        with web.db() as s:
            admin = web.current_user(request, s, admin=True)
            target = s.get(User, user_id)
            if target is None:
                raise HTTPException(404, "no such user")
            if target.id == admin.id:
                raise HTTPException(422, "you cannot disable yourself")
            target.disabled = disabled
            ended = websessions.end_all(s, target.id) if disabled else 0
            web.log(s, request, "user_disabled" if disabled else "user_enabled", admin,
                    detail={"user": target.username, "sessions_ended": ended})
            s.commit()
        return RedirectResponse("/admin?msg=user+" + ("disabled" if disabled else "enabled"), status_code=303)

    @app.post("/admin/users/{user_id}/disable")
    async def disable_user(request: Request, user_id: DbId) -> Response:
        return await form_work(request, set_disabled, user_id=user_id, disabled=True)

    @app.post("/admin/users/{user_id}/enable")
    async def enable_user(request: Request, user_id: DbId) -> Response:
        return await form_work(request, set_disabled, user_id=user_id, disabled=False)

    @app.post("/admin/studies")
    async def admin_create_study(request: Request) -> Response:
        web.require_session(request)
        form = await web.read_form(request)
        web.check_csrf(request, form)
        uploads = []
        for up in form.getlist("pred"):
            if isinstance(up, str) or not up.filename:
                continue
            uploads.append((Path(up.filename).name, await up.read()))
        return await run_in_threadpool(_create_study, web, request, form, uploads)

    @app.get("/admin/studies/{study_id}", response_class=HTMLResponse)
    def study_page(request: Request, study_id: DbId) -> HTMLResponse:
        with web.db() as s:
            user = web.current_user(request, s)
            study = web.study_for(s, user, study_id, MANAGE)
            roles = s.execute(select(User.username, StudyRole.role).join(StudyRole, StudyRole.user_id == User.id)
                              .where(StudyRole.study_id == study_id).order_by(User.username)).all()
            return web.render(request, "study.html", user=user, study=study,
                              systems=[x.name for x in study.systems], n_cases=len(study.cases),
                              progress=study_progress(s, study_id), roles=roles, study_roles=STUDY_ROLES,
                              seed_warning=SEED_WARNING, message=request.query_params.get("msg"))

    def roles_work(request: Request, form: Any, study_id: int) -> Response:
        with web.db() as s:
            user = web.current_user(request, s)
            study = web.study_for(s, user, study_id, MANAGE)
            try:
                grant_role(s, study, str(form.get("username") or ""), str(form.get("role") or ""),
                           actor=user.username, address=web.address(request))
                s.commit()
            except BadInputError as exc:
                raise HTTPException(422, exc.problem) from exc
        return RedirectResponse(f"/admin/studies/{study_id}?msg=role+granted", status_code=303)

    def lifecycle_work(request: Request, form: Any, study_id: int, act: str) -> Response:
        with web.db() as s:
            user = web.current_user(request, s)
            study = web.study_for(s, user, study_id, MANAGE)
            if act == "lock":
                study.locked_at = study.locked_at or utcnow()
            elif act == "unlock":
                if study.unblinded_at is not None:
                    raise HTTPException(409, "an unblinded study stays locked")
                study.locked_at = None
            else:  # unblind: only once no rating can change any more
                if study.locked_at is None:
                    raise HTTPException(409, "lock the study before unblinding it")
                if form.get("confirm") != study.name:
                    raise HTTPException(422, "type the study's name to confirm the unblinding")
                study.unblinded_at = study.unblinded_at or utcnow()
            action = {"lock": "study_locked", "unlock": "study_unlocked", "unblind": "study_unblinded"}[act]
            web.log(s, request, action, user, study_id=study.id, detail={"study": study.name})
            s.commit()
        return RedirectResponse(f"/admin/studies/{study_id}?msg={action}", status_code=303)

    for act in ("lock", "unlock", "unblind"):
        def endpoint_for(act: str = act) -> Any:
            async def endpoint(request: Request, study_id: DbId) -> Response:
                return await form_work(request, lifecycle_work, study_id=study_id, act=act)
            return endpoint
        app.post(f"/admin/studies/{{study_id}}/{act}")(endpoint_for())

    @app.post("/admin/studies/{study_id}/roles")
    async def grant(request: Request, study_id: DbId) -> Response:
        return await form_work(request, roles_work, study_id=study_id)

    @app.get("/admin/studies/{study_id}/export.{fmt}")
    def export(request: Request, study_id: DbId, fmt: str) -> Response:
        with web.db() as s:
            user = web.current_user(request, s)
            study = web.study_for(s, user, study_id, MANAGE)
            if fmt not in ("csv", "json"):
                raise HTTPException(404, "no such export")
            rows = export_rows(s, study.id)
            blinded = study.unblinded_at is None
            if blinded:
                rows = blind_rows(rows, [x.name for x in study.systems])
            web.log(s, request, "export", user, study_id=study.id,
                    detail={"format": fmt, "rows": len(rows), "blinded": blinded})
            s.commit()
        fname = f"{_safe_filename(study.name)}_ratings{'_blinded' if blinded else ''}.{fmt}"
        disp = {"Content-Disposition": f'attachment; filename="{fname}"'}
        if fmt == "csv":
            return Response(rows_to_csv(rows), media_type="text/csv; charset=utf-8", headers=disp)
        return Response(json.dumps(rows, indent=1), media_type="application/json", headers=disp)

    @app.get("/studies/{study_id}/monitor", response_class=HTMLResponse)
    def monitor(request: Request, study_id: DbId) -> HTMLResponse:
        with web.db() as s:
            user = web.current_user(request, s)
            study = web.study_for(s, user, study_id, OVERSEE)
            rows = blind_rows(export_rows(s, study.id), [x.name for x in study.systems])
            progress = study_progress(s, study_id)
            report = agreement_report(rows) if rows else None
            return web.render(request, "monitor.html", user=user, study=study, progress=progress,
                              report=report, n_systems=len(study.systems))


def _create_study(web: Web, request: Request, form: Any, uploads: list[tuple[str, bytes]]) -> Response:
    with web.db() as s:
        admin = web.current_user(request, s, admin=True)
        systems = []
        for filename, data in uploads:
            sname = filename.split(".")[0]
            if not SYSTEM_NAME_RE.match(sname):
                raise HTTPException(422, f"{filename}: system name {sname!r} must match {SYSTEM_NAME_RE.pattern}")
            try:
                records = read_predictions(filename, text=data.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise HTTPException(422, f"{filename}: not UTF-8 text") from exc
            except BadInputError as exc:
                raise HTTPException(422, str(exc)) from exc
            systems.append((sname, filename, records))
        raters = [r.strip() for r in str(form.get("raters") or "").split(",") if r.strip()]
        owners = [r.strip() for r in str(form.get("owners") or "").split(",") if r.strip()]
        images_root = str(form.get("images_root") or "").strip() or None
        # Uploaded files have no folder of their own: image paths must stay inside a folder the
        # admin names, which must itself lie inside a folder the server was started with.
        if images_root is None and any(r.image for _, _, recs in systems for r in recs):
            raise HTTPException(422, "the predictions name images: give the images folder")
        if images_root is not None and not web.image_allowed(Path(images_root)):
            allowed = ", ".join(str(r) for r in web.image_roots) or "none (start the server with --images-root)"
            raise HTTPException(422, f"the images folder must be inside a folder allowed at server start: {allowed}")
        seed_text = str(form.get("seed") or "").strip()
        if seed_text and (not seed_text.isascii() or not seed_text.isdigit() or len(seed_text) > 9):
            raise HTTPException(422, "the seed must be a whole number below 10^9 (or empty: secret blinding)")
        try:
            study = build_study(
                s, str(form.get("name") or "").strip(), systems, str(form.get("design") or ""), raters,
                images_root=images_root, seed=int(seed_text) if seed_text else None,
                show_explanations=form.get("show_explanations") == "1", owners=owners,
                actor=admin.username, address=web.address(request),
            )
            s.commit()
        except MedmmError as exc:
            s.rollback()
            raise HTTPException(422, str(exc)) from exc
        msg = "?msg=explicit+seed:+reproducible+but+recomputable+by+whoever+knows+it" if seed_text else ""
        return RedirectResponse(f"/admin/studies/{study.id}{msg}", status_code=303)


def _safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "study"
