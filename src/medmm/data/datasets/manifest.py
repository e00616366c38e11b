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

import csv
import io
import json
from pathlib import Path
from typing import Any

from medmm.data.io import read_text
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
        return path.read_bytes()
    except OSError as exc:
        raise BadInputError(path, f"cannot read manifest: {exc.strerror or exc}") from exc


def _csv_rows(path: Path) -> list[tuple[str, dict[str, Any] | BadInputError]]:
    """(row label, row dict or the error of that row). Bad bytes spoil only their own row."""
    data = _read_bytes(path)
    # surrogateescape keeps undecodable bytes as marker characters, so one bad row does not
    # lose the whole file; that row is reported with the byte offset of its first bad byte.
    text = data.decode("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8", errors="surrogateescape")
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # offsets count from the start of the file
    bad_offsets: list[int] | None = None
    bad_seen = 0
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise BadInputError(path, f"malformed CSV header: {exc}") from exc
    if not header or not any(h.strip() for h in header):
        raise BadInputError(path, "manifest is empty (no header row)")
    header = [h.strip() for h in header]
    if any(_has_bad_bytes(h) for h in header):
        raise BadInputError(path, "header row is not valid UTF-8")
    if "id" not in header:
        raise BadInputError(path, f"manifest has no 'id' column (columns: {', '.join(header)})")
    out: list[tuple[str, dict[str, Any] | BadInputError]] = []
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise BadInputError(path, f"malformed CSV near line {reader.line_num}: {exc}") from exc
        label = f"line {reader.line_num}"
        if not values or all(not v.strip() for v in values):
            continue
        n_bad = sum(_count_bad_bytes(v) for v in values)
        if n_bad:
            # Each escaped character stands for one undecodable byte, in file order.
            if bad_offsets is None:
                bad_offsets = _bad_byte_offsets(text, bom)
            offset = bad_offsets[bad_seen] if bad_seen < len(bad_offsets) else -1
            bad_seen += n_bad
            out.append((label, BadInputError(path, f"{label}: not valid UTF-8 (byte offset {offset})")))
            continue
        if len(values) > len(header):
            out.append((label, BadInputError(path, f"{label} has {len(values)} fields, header has {len(header)}")))
            continue
        out.append((label, dict(zip(header, values + [""] * (len(header) - len(values)), strict=True))))
    return out


def _count_bad_bytes(value: str) -> int:
    return sum("\udc80" <= ch <= "\udcff" for ch in value)


def _has_bad_bytes(value: str) -> bool:
    return _count_bad_bytes(value) > 0


def _bad_byte_offsets(text: str, start: int) -> list[int]:
    """Byte offsets of the undecodable bytes (surrogate-escaped characters) of `text`."""
    offsets, pos = [], start
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            offsets.append(pos)
            pos += 1
        else:
            pos += len(ch.encode("utf-8", "surrogatepass"))
    return offsets


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
    sample_id = _str(row.get("id"))
    if not sample_id:
        raise BadInputError(path, f"{label}: empty id")
    row_split = _str(row.get("split")) or None
    if row_split is not None and row_split not in SPLITS[:-1]:
        raise BadInputError(
            path, f"{label} (id {sample_id}): unknown split {row_split!r}; use {', '.join(SPLITS[:-1])}"
        )
    if split != "all" and row_split != split:
        return None
    base = path.parent
    modality, view = _str(row.get("modality")) or None, _str(row.get("view")) or None
    raw_images = row.get("image")
    names = raw_images if isinstance(raw_images, list) else _str(raw_images).split(";")
    images = []
    for name in (_str(n) for n in names):
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
        if key in TEXT_FIELDS:
            if _str(value):
                text[key] = _str(value)
        elif key.endswith("_file") and key[: -len("_file")] in TEXT_FIELDS:
            if _str(value):
                text_path = Path(_str(value)) if Path(_str(value)).is_absolute() else base / _str(value)
                text[key[: -len("_file")]] = read_text(text_path).strip()
        elif key.startswith("target:"):
            if _str(value):
                targets[key[len("target:") :]] = _str(value)
        elif key.startswith("finding:"):
            state = _str(value)
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
            meta[key] = value
    ids = {k: _str(row.get(k)) or None for k in _IDS}
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
