"""A generic manifest (CSV or JSON lines) for your own data: one row per sample.

Root is the manifest file, or a folder holding ``manifest.csv`` or ``manifest.jsonl``. Columns:

    id                      unique sample id (required)
    image                   image path(s) relative to the manifest's folder; several separated by ";"
                            (a JSONL value may also be a list). May be blank for text-only samples.
    split                   train / val / validate / dev / test; the split "all" returns every row
    report, findings, ...   text columns named as in medmm.data.schema.TEXT_FIELDS
    <field>_file            a text field read from a UTF-8 file (e.g. report_file: reports/1.txt)
    target:<name>           categorical targets, e.g. target:diagnosis
    finding:<name>          observation states: 1 positive, 0 negative, -1 uncertain, blank missing
    patient_id, case_id, study_id, image_id    grouping ids
    modality, view          stored on every ImageRef of the row
Any other non-blank column goes to ``Sample.meta``. Every bad row (missing id, unknown split,
unknown finding value, missing image or text file, undecodable bytes) is one BadInputError naming
the manifest and the row; ``skip_bad=True`` skips and counts it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medmm.data.fields import label_value, text_value
from medmm.data.io import read_text
from medmm.data.io.text import read_csv_records
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import TEXT_FIELDS, ImageRef, LabelState, Sample
from medmm.errors import BadInputError

SPLITS = ("train", "val", "validate", "dev", "test", "all")
NAMES = ("manifest.csv", "manifest.jsonl")
_FINDING = {"1": LabelState.POSITIVE, "0": LabelState.NEGATIVE, "-1": LabelState.UNCERTAIN}
_IDS = ("patient_id", "case_id", "study_id", "image_id")
_RESERVED = {"id", "image", "split", "modality", "view", *TEXT_FIELDS, *_IDS}


def _manifest_path(root: Path) -> Path:
    if root.is_file():
        return root
    for name in NAMES:
        if (root / name).is_file():
            return root / name
    raise BadInputError(root, f"no manifest found (expected the file itself or {' / '.join(NAMES)} in this folder)")


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(path, f"cannot read manifest: {exc.strerror or exc}") from exc
    if not data.strip():
        raise BadInputError(path, "manifest is empty (no header row)" if path.suffix.lower() == ".csv" else "manifest is empty")
    return data


def _csv_rows(path: Path) -> list[tuple[str, dict[str, Any] | BadInputError]]:
    """(row label, row dict or the error of that row). Bad bytes spoil only their own row."""
    _read_bytes(path)  # the manifest's own message for an empty file
    header, records = read_csv_records(path)
    if "id" not in header:
        raise BadInputError(path, f"manifest has no 'id' column (columns: {', '.join(header)})")
    return list(records)


def _jsonl_rows(path: Path) -> list[tuple[str, dict[str, Any] | BadInputError]]:
    out: list[tuple[str, dict[str, Any] | BadInputError]] = []
    offset = 0
    for lineno, raw in enumerate(_read_bytes(path).split(b"\n"), start=1):
        start, offset = offset, offset + len(raw) + 1
        label = f"line {lineno}"
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            out.append((label, BadInputError(path, f"{label}: not valid UTF-8 (byte offset {start + exc.start})")))
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            out.append((label, BadInputError(path, f"{label}: invalid JSON: {exc.msg}")))
            continue
        if not isinstance(rec, dict):
            out.append((label, BadInputError(path, f"{label}: expected a JSON object")))
            continue
        out.append((label, rec))
    return out


def _str(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _row_to_sample(path: Path, label: str, row: dict[str, Any], split: str) -> Sample | None:
    """Build the Sample of one row, or None when the row belongs to another split."""
    sample_id = label_value(row.get("id"), path, f"{label} id", required=False)
    if not sample_id:
        raise BadInputError(path, f"{label}: empty id")
    row_split = text_value(row.get("split"), path, f"{label} split", required=False)
    if row_split is not None and row_split not in SPLITS[:-1]:
        raise BadInputError(
            path, f"{label} (id {sample_id}): unknown split {row_split!r}; use {', '.join(SPLITS[:-1])}"
        )
    if split != "all" and row_split != split:
        return None
    base = path.parent
    modality = text_value(row.get("modality"), path, f"{label} modality", required=False)
    view = text_value(row.get("view"), path, f"{label} view", required=False)
    raw_images = row.get("image")
    names = raw_images if isinstance(raw_images, list) else (text_value(raw_images, path, f"{label} image", required=False) or "").split(";")
    images = []
    for name in (text_value(n, path, f"{label} image", required=False) or "" for n in names):
        if not name:
            continue
        image_path = Path(name) if Path(name).is_absolute() else base / name
        if not image_path.is_file():
            raise BadInputError(image_path, f"image of {path.name} {label} (id {sample_id}) not found")
        images.append(ImageRef(path=image_path, modality=modality, view=view, image_id=image_path.name))
    text: dict[str, str] = {}
    targets: dict[str, str] = {}
    findings: dict[str, LabelState] = {}
    meta: dict[str, Any] = {}
    for key, value in row.items():
        key = _str(key)
        where = f"{label} (id {sample_id}) {key}"
        if key in TEXT_FIELDS:
            value = text_value(value, path, where, required=False, integers_ok=key == "answer")
            if value:
                text[key] = value
        elif key.endswith("_file") and key[: -len("_file")] in TEXT_FIELDS:
            value = text_value(value, path, where, required=False)
            if value:
                text_path = Path(value) if Path(value).is_absolute() else base / value
                text[key[: -len("_file")]] = text_value(read_text(text_path), text_path, "text file")
        elif key.startswith("target:"):
            value = label_value(value, path, where, required=False)
            if value:
                targets[key[len("target:") :]] = value
        elif key.startswith("finding:"):
            state = label_value(value, path, where, required=False) or ""
            state = state.removesuffix(".0")  # pandas writes 1/0/-1 as 1.0/0.0/-1.0
            if state == "":
                continue
            if state not in _FINDING:
                raise BadInputError(
                    path,
                    f"{label} (id {sample_id}): finding {key[len('finding:'):]!r} has value {value!r}; "
                    "use 1, 0, -1 or blank",
                )
            findings[key[len("finding:") :]] = _FINDING[state]
        elif key not in _RESERVED and value not in (None, ""):
            if isinstance(value, str) and "\x00" in value:
                raise BadInputError(path, f"{where} contains a NUL byte")
            meta[key] = value
    ids = {k: label_value(row.get(k), path, f"{label} (id {sample_id}) {k}", required=False) for k in _IDS}
    return Sample(
        id=sample_id,
        dataset="manifest",
        split=row_split or "all",
        images=images,
        text=text,
        targets=targets,
        findings=findings,
        meta=meta,
        **ids,
    )


@register_dataset(
    "manifest",
    splits=SPLITS,
    union_split="all",
    description="your own data: a CSV/JSONL manifest of images, texts, targets, findings and group ids",
    group_by="patient",
)
def load_manifest(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """Rows of `split` ("all" = every row) from a manifest CSV/JSONL."""
    path = _manifest_path(root)
    rows = _jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows(path)
    out: list[Sample] = []
    seen: dict[str, str] = {}
    for label, row in rows:
        try:
            if isinstance(row, BadInputError):
                raise row
            sample = _row_to_sample(path, label, row, split)
            if sample is None:
                continue
            if sample.id in seen:
                raise BadInputError(path, f"{label}: id {sample.id!r} repeats {seen[sample.id]}")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        seen[sample.id] = label
        out.append(sample)
    return out
