"""Export a study's ratings (one row per rated assignment) to CSV or JSON, with system names and,
for studies that showed raters the models' evidence, the explanation text each rater saw."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medmm.errors import BadInputError
from medmm.humaneval.models import (
    ERROR_FIELDS,
    LIKERT_FIELDS,
    Assignment,
    Case,
    Output,
    Rating,
    Study,
    System,
    User,
)

COLUMNS = (
    "study", "design", "rater", "item_id", "assignment", "position", "system", "system_left",
    "system_right", "preference", "preferred_system", *LIKERT_FIELDS, *ERROR_FIELDS,
    "errors_significant", "errors_insignificant", "comment", "completed", "updated_at",
    "explanations_shown", "explanation", "explanation_left", "explanation_right",
)


def export_rows(session: Session, study_id: int) -> list[dict[str, Any]]:
    """All saved ratings of a study, un-blinded (system names), ordered by rater then position."""
    study = session.get(Study, study_id)
    if study is None:
        raise BadInputError(None, f"no study with id {study_id}")
    outputs = {o.id: o for o in session.scalars(select(Output).join(Case).where(Case.study_id == study_id))}
    # The explanation columns say what raters were shown: empty when the study hid it, so an
    # analysis never attributes to raters evidence they did not see.
    shown = bool(study.show_explanations)
    q = (
        select(Rating, Assignment, User.username, Case.source_id)
        .join(Assignment, Rating.assignment_id == Assignment.id)
        .join(User, Assignment.rater_id == User.id)
        .join(Case, Assignment.case_id == Case.id)
        .where(Assignment.study_id == study_id)
        .order_by(User.username, Assignment.position)
    )
    rows = []
    for rating, a, rater, source_id in session.execute(q).all():
        left_output = outputs[a.left_output_id]
        right_output = outputs[a.right_output_id] if a.right_output_id is not None else None
        left = left_output.system.name
        right = right_output.system.name if right_output is not None else None
        pref = rating.preference
        row: dict[str, Any] = {
            "study": study.name,
            "design": study.design,
            "rater": rater,
            "item_id": source_id,
            "assignment": a.public_id,
            "position": a.position,
            "system": left if right is None else None,
            "system_left": left if right is not None else None,
            "system_right": right,
            "preference": pref,
            "preferred_system": {"left": left, "right": right, "tie": "tie"}.get(pref or ""),
        }
        for f in (*LIKERT_FIELDS, *ERROR_FIELDS):
            row[f] = getattr(rating, f)
        sig = [row[f] for f in ERROR_FIELDS if f.startswith("err_sig_") and row[f] is not None]
        insig = [row[f] for f in ERROR_FIELDS if f.startswith("err_insig_") and row[f] is not None]
        row["errors_significant"] = sum(sig) if sig else None
        row["errors_insignificant"] = sum(insig) if insig else None
        row["comment"] = rating.comment
        row["completed"] = bool(rating.completed)
        row["updated_at"] = rating.updated_at.isoformat(timespec="seconds")
        row["explanations_shown"] = shown
        left_text = left_output.explanation if shown else None
        right_text = right_output.explanation if shown and right_output is not None else None
        row["explanation"] = left_text if right is None else None
        row["explanation_left"] = left_text if right is not None else None
        row["explanation_right"] = right_text
        rows.append(row)
    return rows


def output_metrics(session: Session, study_id: int) -> dict[tuple[str, str], dict[str, float]]:
    """Automated metric columns of the predictions files: (item_id, system) -> {metric: value}."""
    q = (
        select(Case.source_id, System.name, Output.metrics_json)
        .join(Output, Output.case_id == Case.id)
        .join(System, Output.system_id == System.id)
        .where(Case.study_id == study_id)
    )
    return {(c, s): json.loads(m) for c, s, m in session.execute(q).all() if m}


def _csv_safe(value: Any) -> Any:
    # Spreadsheet formula injection: a comment starting with = + - @ must stay text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text with the fixed ``COLUMNS`` header."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_safe("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return buf.getvalue()


def write_export(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """Write rows to ``out`` (.csv or .json by suffix)."""
    out = Path(out)
    if out.suffix.lower() == ".csv":
        out.write_text(rows_to_csv(rows), encoding="utf-8")
    elif out.suffix.lower() == ".json":
        out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    else:
        raise BadInputError(out, "export file must end in .csv or .json")
    return out


def read_export(path: str | Path) -> list[dict[str, Any]]:
    """Read rows written by ``write_export`` (numbers parsed back from CSV)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInputError(path, f"cannot read ratings: {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInputError(path, f"not valid JSON ({exc.msg})") from exc
        if not isinstance(rows, list):
            raise BadInputError(path, "expected a JSON list of rating rows")
        return rows
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        row: dict[str, Any] = {}
        for k, v in r.items():
            if k in (*LIKERT_FIELDS, *ERROR_FIELDS, "position", "errors_significant", "errors_insignificant"):
                row[k] = int(v) if v not in ("", None) else None
            else:
                row[k] = v if v != "" else None
        rows.append(row)
    return rows


def blind_rows(rows: list[dict[str, Any]], system_names: list[str]) -> list[dict[str, Any]]:
    """``rows`` with system names replaced by neutral codes ("system 1", ...) and the models'
    evidence dropped: what a monitor, or an export before unblinding, may see."""
    from medmm.humaneval.blinding import system_codes

    codes = system_codes(system_names)
    out = []
    for row in rows:
        row = dict(row)
        for key in ("system", "system_left", "system_right", "preferred_system"):
            if row.get(key) in codes:
                row[key] = codes[row[key]]
        for key in ("explanation", "explanation_left", "explanation_right"):
            row[key] = None
        out.append(row)
    return out
