"""Users and studies: read predictions files, build blinded, per-rater randomised assignments."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from medmm.errors import BadInputError, MedmmError
from medmm.humaneval import audit
from medmm.humaneval.blinding import SEED_WARNING, new_study_secret, rater_rng
from medmm.humaneval.explanations import explain_rationale
from medmm.humaneval.models import STUDY_ROLES, Assignment, Case, Output, Rating, Study, StudyRole, System, User

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SYSTEM_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,128}$")
MAX_TEXT = 100_000  # one prediction / reference / question, in characters
DESIGNS = ("single", "pairwise")
# Keys of a predictions line that are not automated metrics.
_KNOWN_KEYS = {"id", "prediction", "reference", "image", "image_path", "question", "system", "explanation"}


@dataclass
class PredictionRecord:
    """One line of a predictions JSONL file."""

    id: str
    prediction: str
    reference: str | None = None
    image: str | None = None
    question: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    explanation: str | None = None


def parse_pred_arg(arg: str) -> tuple[str, Path]:
    """``name=path`` or ``path`` (the system name is then the file name without suffixes)."""
    if "=" in arg and not Path(arg).exists():
        name, path = arg.split("=", 1)
    else:
        path = arg
        name = Path(arg).name.split(".")[0]
    if not SYSTEM_NAME_RE.match(name):
        raise BadInputError(path, f"system name {name!r} must match {SYSTEM_NAME_RE.pattern}")
    return name, Path(path)


def _text(value: Any, path: str | Path, lineno: int, key: str, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise BadInputError(path, f"line {lineno}: missing '{key}'")
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "id":
        value = str(value)
    if not isinstance(value, str):
        raise BadInputError(path, f"line {lineno}: '{key}' must be a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise BadInputError(path, f"line {lineno}: '{key}' is longer than {MAX_TEXT} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL; no real report has one
        raise BadInputError(path, f"line {lineno}: '{key}' contains a NUL character")
    return value


def read_predictions(path: str | Path, text: str | None = None) -> list[PredictionRecord]:
    """Read a predictions JSONL file (or its ``text``); numeric extra keys become metrics.

    An output's explanation is the line's ``"explanation"`` text or, failing that, its
    ``"rationale"`` object (medmm VQA records) in words (`medmm.humaneval.explanations`).
    """
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInputError(path, f"cannot read predictions file: {exc}") from exc
    records: list[PredictionRecord] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(path, f"line {lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise BadInputError(path, f"line {lineno}: expected a JSON object")
        rid = _text(obj.get("id"), path, lineno, "id", required=True)
        assert rid is not None
        if rid in seen:
            raise BadInputError(path, f"line {lineno}: duplicate id {rid!r}")
        seen.add(rid)
        metrics = {
            k: float(v)
            for k, v in obj.items()
            if k not in _KNOWN_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        explanation = _text(obj.get("explanation"), path, lineno, "explanation")
        if explanation is None and isinstance(obj.get("rationale"), dict):
            explanation = explain_rationale(obj["rationale"])  # a medmm VQA record's evidence
        records.append(
            PredictionRecord(
                id=rid,
                prediction=_text(obj.get("prediction"), path, lineno, "prediction", required=True) or "",
                reference=_text(obj.get("reference"), path, lineno, "reference"),
                # medmm's own prediction records (e.g. a VQA run's predictions/test.jsonl) name it image_path
                image=_text(obj.get("image", obj.get("image_path")), path, lineno, "image"),
                question=_text(obj.get("question"), path, lineno, "question"),
                metrics=metrics,
                explanation=explanation,
            )
        )
    if not records:
        raise BadInputError(path, "no predictions in file")
    return records


def _resolve_image(image: str, images_root: Path | None, pred_path: Path, lineno_id: str) -> str:
    # Images are always read inside a folder named on purpose: never relative to where the
    # predictions file or the server happens to be, so `../../secret.png` or `/etc/...` cannot leak.
    if images_root is None:
        raise BadInputError(pred_path, f"id {lineno_id!r} names an image: give the images folder (--images-root)")
    candidate = (images_root / image).resolve()  # resolve() follows symlinks: they must stay inside too
    if not candidate.is_relative_to(images_root.resolve()):
        raise BadInputError(pred_path, f"id {lineno_id!r}: image {image!r} is outside --images-root")
    if not candidate.is_file():
        raise BadInputError(candidate, f"image of id {lineno_id!r} not found")
    return str(candidate)


def validate_username(name: str) -> str:
    """Return ``name`` if it is a valid username, else raise BadInputError."""
    if not USERNAME_RE.match(name or ""):
        raise BadInputError(None, f"username {name!r} must be 1-64 of letters, digits, '_', '.', '-'")
    return name


def create_user(session: Session, username: str, password: str, *, admin: bool = False,
                actor: str | None = None, address: str | None = None) -> User:
    """Create an admin or rater account (argon2-hashed password); fails if the name is taken or the
    password breaks the policy (`security.password_problem`). Logged in the audit trail."""
    from medmm.humaneval.security import hash_password, password_problem

    validate_username(username)
    problem = password_problem(password, username)
    if problem:
        raise BadInputError(None, problem)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise BadInputError(None, f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), is_admin=admin)
    session.add(user)
    session.flush()
    audit.append(session, "user_created", username=actor, address=address,
                 detail={"user": username, "admin": admin})
    return user


def grant_role(session: Session, study: Study, username: str, role: str, *, actor: str | None,
               address: str | None = None) -> None:
    """Make ``username`` an owner or monitor of ``study`` (idempotent); logged."""
    if role not in STUDY_ROLES:
        raise BadInputError(None, f"role must be one of {STUDY_ROLES}, got {role!r}")
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise BadInputError(None, f"user {username!r} has no account")
    exists = session.scalar(select(StudyRole).where(StudyRole.study_id == study.id, StudyRole.user_id == user.id,
                                                    StudyRole.role == role))
    if exists is None:
        session.add(StudyRole(study_id=study.id, user_id=user.id, role=role))
        audit.append(session, "role_granted", username=actor, address=address, study_id=study.id,
                     detail={"user": username, "role": role})


def build_study(
    session: Session,
    name: str,
    systems: Sequence[tuple[str, str | Path, list[PredictionRecord]]],
    design: str,
    raters: Sequence[str],
    *,
    images_root: str | Path | None = None,
    seed: int | None = None,
    show_explanations: bool = False,
    owners: Sequence[str] = (),
    actor: str | None = None,
    address: str | None = None,
) -> Study:
    """Create a study from already-parsed predictions of each system (see create_study_from_predictions).

    Blinding comes from a fresh server-side secret unless ``seed`` is given (an explicit,
    logged choice: see `medmm.humaneval.blinding.SEED_WARNING`).
    """
    if design not in DESIGNS:
        raise BadInputError(None, f"design must be one of {DESIGNS}, got {design!r}")
    if not name or len(name) > 128:
        raise BadInputError(None, "study name must have 1 to 128 characters")
    if session.scalar(select(Study).where(Study.name == name)) is not None:
        raise BadInputError(None, f"study {name!r} already exists")
    names = [s[0] for s in systems]
    if len(set(names)) != len(names):
        raise BadInputError(None, f"system names must be distinct, got {names}")
    if design == "pairwise" and len(systems) < 2:
        raise BadInputError(None, "a pairwise study needs at least two predictions files")
    if not systems:
        raise BadInputError(None, "no predictions files given")
    rater_users: list[User] = []
    for r in raters:
        user = session.scalar(select(User).where(User.username == r))
        if user is None:
            raise BadInputError(None, f"rater {r!r} has no account (create it with `medmm humaneval create-user`)")
        rater_users.append(user)
    if not rater_users:
        raise BadInputError(None, "a study needs at least one rater")
    root = Path(images_root).expanduser().resolve() if images_root else None
    if root is not None and not root.is_dir():
        raise BadInputError(root, "--images-root is not a folder")

    # Every system must answer the same cases: a comparison on different inputs is not blinded.
    _first_name, first_path, first_records = systems[0]
    ids = [r.id for r in first_records]
    for _sname, spath, recs in systems[1:]:
        if sorted(r.id for r in recs) != sorted(ids):
            missing = sorted(set(ids) - {r.id for r in recs})[:5]
            extra = sorted({r.id for r in recs} - set(ids))[:5]
            raise BadInputError(
                spath, f"ids differ from {first_path} (missing {missing}, extra {extra})"
            )

    secret = new_study_secret() if seed is None else None
    study = Study(name=name, design=design, seed=seed or 0, blind_secret=secret, seeded=seed is not None,
                  images_root=str(root) if root else None, show_explanations=show_explanations)
    session.add(study)
    session.flush()
    audit.append(session, "study_created", username=actor, address=address, study_id=study.id,
                 detail={"name": name, "design": design, "systems": [s[0] for s in systems],
                         "raters": list(raters), "images_root": study.images_root,
                         "blinding": "seed" if seed is not None else "secret"})
    if seed is not None:
        audit.append(session, "seed_chosen", username=actor, address=address, study_id=study.id,
                     detail={"seed": seed, "warning": SEED_WARNING})
    for owner in owners:
        grant_role(session, study, owner, "owner", actor=actor, address=address)
    sys_rows = [System(study_id=study.id, name=n) for n, _, _ in systems]
    session.add_all(sys_rows)
    session.flush()
    by_id = [{r.id: r for r in recs} for _, _, recs in systems]
    case_rows: dict[str, Case] = {}
    for rec in first_records:
        # Shared fields (image, question, reference) come from the first file that has them.
        image, pred_path = next(
            ((m[rec.id].image, Path(p)) for (_, p, _), m in zip(systems, by_id, strict=True) if m[rec.id].image),
            (None, Path(first_path)),
        )
        case = Case(
            study_id=study.id,
            source_id=rec.id,
            question=next((m[rec.id].question for m in by_id if m[rec.id].question), None),
            reference=next((m[rec.id].reference for m in by_id if m[rec.id].reference), None),
            image_path=_resolve_image(image, root, pred_path, rec.id) if image else None,
        )
        case_rows[rec.id] = case
    session.add_all(case_rows.values())
    session.flush()
    outputs: dict[tuple[str, int], Output] = {}
    for si, (srow, m) in enumerate(zip(sys_rows, by_id, strict=True)):
        for rid, rec in m.items():
            out = Output(
                case_id=case_rows[rid].id,
                system_id=srow.id,
                prediction=rec.prediction,
                metrics_json=json.dumps(rec.metrics) if rec.metrics else None,
                explanation=rec.explanation,
            )
            outputs[(rid, si)] = out
    session.add_all(outputs.values())
    session.flush()

    units: list[tuple[str, tuple[int, ...]]] = []
    for rid in ids:
        if design == "single":
            units += [(rid, (si,)) for si in range(len(sys_rows))]
        else:
            units += [(rid, pair) for pair in combinations(range(len(sys_rows)), 2)]
    for rater in rater_users:
        # Per rater: each sees a different order and left/right, which only the server can recompute.
        rng = rater_rng(study=name, username=rater.username, secret=secret, seed=seed)
        order = list(units)
        rng.shuffle(order)
        for pos, (rid, sis) in enumerate(order):
            sis = tuple(sis)
            if len(sis) == 2 and rng.random() < 0.5:
                sis = (sis[1], sis[0])
            session.add(
                Assignment(
                    public_id=secrets.token_urlsafe(16),
                    study_id=study.id,
                    rater_id=rater.id,
                    case_id=case_rows[rid].id,
                    left_output_id=outputs[(rid, sis[0])].id,
                    right_output_id=outputs[(rid, sis[1])].id if len(sis) == 2 else None,
                    position=pos,
                )
            )
    session.flush()
    return study


def create_study_from_predictions(
    db_url: str,
    name: str,
    pred_files: Iterable[str | Path],
    design: str,
    raters: Iterable[str],
    *,
    images_root: str | Path | None = None,
    seed: int | None = None,
    create_missing_raters: dict[str, str] | None = None,
    show_explanations: bool = False,
    owners: Sequence[str] = (),
    actor: str | None = None,
) -> int:
    """Create a study in ``db_url`` from predictions JSONL files; returns the study id.

    ``pred_files`` items are paths or ``name=path``; ``raters`` are existing usernames, except
    those in ``create_missing_raters`` (username -> password), which are created first if absent.
    ``show_explanations`` shows raters each output's explanation (see `read_predictions`).
    ``seed``: None (default) blinds with a server-side secret; an int is an explicit, logged
    reproducibility seed. ``actor`` names who did it in the audit trail (the CLI: ``cli:<os user>``).
    The schema is migrated first, so a new SQLite file works.
    """
    from medmm.humaneval.db import open_db

    systems = []
    for arg in pred_files:
        sname, path = parse_pred_arg(str(arg))
        systems.append((sname, path, read_predictions(path)))
    engine, factory = open_db(db_url)
    try:
        with factory.begin() as session:
            for user, password in (create_missing_raters or {}).items():
                if session.scalar(select(User).where(User.username == user)) is None:
                    create_user(session, user, password, actor=actor)
            study = build_study(
                session, name, systems, design, list(raters), images_root=images_root, seed=seed,
                show_explanations=show_explanations, owners=owners, actor=actor,
            )
            return study.id
    finally:
        engine.dispose()


def get_study(session: Session, name_or_id: str | int) -> Study:
    """Find a study by name (or numeric id), else raise MedmmError."""
    study = session.scalar(select(Study).where(Study.name == str(name_or_id)))
    if study is None and str(name_or_id).isdigit():
        study = session.get(Study, int(name_or_id))
    if study is None:
        raise MedmmError(f"no study named {name_or_id!r}")
    return study


def study_progress(session: Session, study_id: int) -> list[dict[str, Any]]:
    """Per rater: number of assignments, number rated (any answer saved), number completed."""
    total = dict(
        session.execute(
            select(User.username, func.count(Assignment.id))
            .join(Assignment, Assignment.rater_id == User.id)
            .where(Assignment.study_id == study_id)
            .group_by(User.username)
        ).all()
    )
    rows = session.execute(
        select(User.username, func.count(Rating.id), func.sum(cast(Rating.completed, Integer)))
        .join(Assignment, Assignment.rater_id == User.id)
        .join(Rating, Rating.assignment_id == Assignment.id)
        .where(Assignment.study_id == study_id)
        .group_by(User.username)
    ).all()
    done = {u: (int(n), int(c or 0)) for u, n, c in rows}
    return [
        {"rater": u, "total": t, "started": done.get(u, (0, 0))[0], "completed": done.get(u, (0, 0))[1]}
        for u, t in sorted(total.items())
    ]
