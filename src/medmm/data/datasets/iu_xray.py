"""IU X-ray (Indiana / Open-i) chest X-ray reports in three public layouts.

* ``iu_xray``: the R2Gen ``annotation.json`` (splits train/val/test, one sample per study with
  ``text["report"]`` = the findings text R2Gen trains on). Images are referenced when the R2Gen
  ``images/`` folder sits next to the json (``images/CXR2384_IM-0942/0.png``), else none.
* ``iu_xray_kaggle``: Kaggle ``indiana_reports.csv`` + ``indiana_projections.csv`` (split "all";
  findings, impression, indication -> ``text["history"]``, MeSH/Problems in meta, projections in
  image views). Images referenced when ``images/images_normalized/`` or ``images/`` is present.
* ``iu_xray_openi_labels``: the Open-i gold-standard labels (NegBio ``openi_gld_std14.csv``:
  14 ChestX-ray14 findings + "normal", 0/1) as ``Sample.findings``, with the report text from
  the Kaggle CSV when it is in the root (uid = the number in "CXR<uid>"). Split "all".

Root is the ``iu_xray_reports`` folder or a folder holding the files directly. Each report is
one study; the collection has no patient ids, so group by "study". ``study_id`` is the report
uid in all three ("CXR2384_IM-0942" -> "2384"), so the layouts can be joined and cross-checked.
"""

from __future__ import annotations

import re
from pathlib import Path

from medmm.data.fields import UniqueIds, text_value
from medmm.data.io import read_json
from medmm.data.io.text import read_csv_records
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, LabelState, Sample
from medmm.errors import BadInputError

OPENI_LABELS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
    "normal",
)  # fmt: skip


def _locate(root: Path, name: str, subdirs: tuple[str, ...]) -> Path | None:
    for d in ("", *subdirs):
        cand = root / d / name if d else root / name
        if cand.is_file():
            return cand
    return None


def _read_csv(path: Path, required: set[str], errors: ErrorPolicy) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV (with "_line"); a row with bad bytes or extra fields goes to `errors`."""
    header, records = read_csv_records(path)
    if not required <= set(header):
        raise BadInputError(path, f"missing columns {sorted(required - set(header))}")
    rows = []
    for label, row in records:
        if isinstance(row, BadInputError):
            errors.handle(row)
            continue
        row["_line"] = label
        rows.append(row)
    return rows


@register_dataset(
    "iu_xray",
    splits=("train", "val", "test"),
    description="IU X-ray R2Gen annotation.json: 2,955 chest X-ray studies, findings text (images if present)",
    group_by="study",
)
def load_iu_xray(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """One sample per R2Gen study of `split`; [] when no annotation.json is under root."""
    path = _locate(root, "annotation.json", ("r2gen_annotation",))
    if path is None:
        return []
    data = read_json(path)
    if not isinstance(data, dict):
        raise BadInputError(path, "expected an object {split: [studies]}")
    image_root = path.parent / "images"
    out: list[Sample] = []
    ids = UniqueIds(path, "study id")
    for key, items in data.items():
        # Some public copies store the test list under a blank key; each item still names its split.
        key_split = key.strip()
        for i, item in enumerate(items if isinstance(items, list) else []):
            try:
                if not isinstance(item, dict) or not str(item.get("id", "")).strip():
                    raise BadInputError(path, f"{key!r}[{i}]: study has no id")
                item_split = str(item.get("split") or key_split).strip()
                ids.add(str(item["id"]).strip(), f"{key!r}[{i}]", check=item_split == split)
                if key_split and item_split != key_split:
                    raise BadInputError(path, f"study {item['id']} is listed under {key!r} but says split {item_split!r}")
                if item_split != split:
                    continue
                report = text_value(item.get("report"), path, f"study {item['id']} report", required=False)
                if not report:
                    raise BadInputError(path, f"study {item['id']}: empty report")
                image_paths = item.get("image_path") or []
                if not isinstance(image_paths, list) or not all(isinstance(p, str) for p in image_paths):
                    raise BadInputError(path, f"study {item['id']}: image_path is not a list of paths")
            except BadInputError as exc:
                errors.handle(exc)
                continue
            sid = str(item["id"]).strip()
            uid = re.match(r"CXR(\d+)", sid)
            images = [
                ImageRef(path=image_root / rel, modality="XR", image_id=rel)
                for rel in item.get("image_path") or []
                if (image_root / rel).is_file()
            ]
            out.append(
                Sample(
                    id=sid,
                    dataset="iu_xray",
                    split=split,
                    images=images,
                    text={"report": report},
                    study_id=uid.group(1) if uid else sid,
                    meta={"image_paths": list(item.get("image_path") or [])},
                )
            )
    return out


def _kaggle_reports(root: Path, errors: ErrorPolicy) -> tuple[Path, dict[str, dict[str, str]]] | None:
    """indiana_reports.csv rows by uid; a row without uid, repeating one or with bad text is bad."""
    path = _locate(root, "indiana_reports.csv", ("kaggle_raddar_csv",))
    if path is None:
        return None
    ids = UniqueIds(path, "uid")
    rows: dict[str, dict[str, str]] = {}
    for row in _read_csv(path, {"uid", "findings", "impression"}, errors):
        try:
            uid = row["uid"].strip()
            if not uid:
                raise BadInputError(path, f"{row['_line']}: empty uid")
            ids.add(uid, row["_line"])
            _text_of(row, path)
        except BadInputError as exc:
            errors.handle(exc)
            continue
        rows[uid] = row
    return path, rows


def _text_of(row: dict[str, str], path: Path) -> dict[str, str]:
    text = {}
    for src, dst in (("findings", "findings"), ("impression", "impression"), ("indication", "history")):
        value = text_value(row.get(src), path, f"{row.get('_line')} {src}", required=False)
        if value:
            text[dst] = value
    return text


@register_dataset(
    "iu_xray_kaggle",
    splits=("all",),
    description="IU X-ray Kaggle CSVs: 3,851 reports (findings, impression, indication) + projections",
    group_by="study",
)
def load_iu_xray_kaggle(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """One sample per report uid of indiana_reports.csv; images listed by indiana_projections.csv.

    A few reports have neither findings nor impression in the source; they are kept (the row
    is real) with whatever text they have, so filter on ``text`` for report tasks.
    """
    found = _kaggle_reports(root, errors) if split == "all" else None
    if found is None:
        return []
    path, reports = found
    proj_path = path.parent / "indiana_projections.csv"
    projections: dict[str, list[tuple[str, str]]] = {}
    if proj_path.is_file():
        files = UniqueIds(proj_path, "filename")
        for r in _read_csv(proj_path, {"uid", "filename", "projection"}, errors):
            try:
                files.add(r["filename"].strip(), r["_line"])
            except BadInputError as exc:
                errors.handle(exc)
                continue
            projections.setdefault(r["uid"].strip(), []).append((r["filename"].strip(), r["projection"].strip()))
    image_dirs = [d for d in (path.parent / "images" / "images_normalized", path.parent / "images") if d.is_dir()]

    out: list[Sample] = []
    for uid, row in reports.items():
        text = _text_of(row, path)
        images = []
        for fname, view in projections.get(uid, []):
            for d in image_dirs:
                if (d / fname).is_file():
                    images.append(ImageRef(path=d / fname, modality="XR", view=view, image_id=fname))
                    break
        meta = {k: row[k].strip() for k in ("MeSH", "Problems", "image", "comparison") if (row.get(k) or "").strip()}
        meta["projections"] = projections.get(uid, [])
        out.append(
            Sample(id=f"CXR{uid}", dataset="iu_xray_kaggle", split="all", images=images, text=text, study_id=uid, meta=meta)
        )
    return out


@register_dataset(
    "iu_xray_openi_labels",
    splits=("all",),
    description="Open-i gold-standard 14 finding labels + normal (NegBio) for IU X-ray reports",
    group_by="study",
)
def load_iu_xray_openi_labels(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """One sample per labelled report: findings {label: POSITIVE/NEGATIVE}, text from Kaggle CSV."""
    if split != "all":
        return []
    path = _locate(root, "openi_gld_std14_negbio_labels.csv", ()) or _locate(root, "openi_gld_std14.csv", ())
    if path is None:
        return []
    rows = _read_csv(path, {"filename", *OPENI_LABELS}, errors)
    found = _kaggle_reports(root, ErrorPolicy(skip_bad=True))  # its bad rows count in iu_xray_kaggle
    reports = found[1] if found else {}
    names = UniqueIds(path, "filename")

    out: list[Sample] = []
    for row in rows:
        name = (row.get("filename") or "").strip()
        i = row["_line"]
        try:
            if not name.startswith("CXR"):
                raise BadInputError(path, f"{i}: filename {name!r} is not CXR<uid>")
            names.add(name, i)
            findings = {}
            for label in OPENI_LABELS:
                value = (row.get(label) or "").strip()
                if value not in {"0", "1"}:
                    raise BadInputError(path, f"{i} ({name}): {label} = {value!r}, expected 0 or 1")
                findings[label] = LabelState.POSITIVE if value == "1" else LabelState.NEGATIVE
        except BadInputError as exc:
            errors.handle(exc)
            continue
        uid = name[3:]
        report = reports.get(uid)
        out.append(
            Sample(
                id=name,
                dataset="iu_xray_openi_labels",
                split="all",
                text=_text_of(report, path) if report else {},
                findings=findings,
                study_id=uid,
            )
        )
    return out
