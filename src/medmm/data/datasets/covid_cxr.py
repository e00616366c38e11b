"""ieee8023 COVID-19 chest X-ray collection and its two annotated subsets.

Three registered names, all with the single split "all" (the collection has no official split;
split by patient with ``medmm.data.splits.grouped_split(samples, "patient", ...)``):

* ``covid_cxr``: one sample per ``metadata.csv`` row (finding, view, clinical notes, licence).

All three add ``meta["severity"] = {"geographic_extent_mean", "opacity_mean"}`` (0-8, 0-6; mean
of 3 raters) for images listed in ``covid-severity-scores.csv``.
* ``covid_cxr_lungboxes``: one sample per image of ``lung_bboxes/annotations/annotations.json``
  (COCO, two boxes per image: Right Lung / Left Lung), joined to metadata.csv by file name.
* ``covid_cxr_seg``: one sample per image of ``segmentations_100/structure.csv``, with one
  `MaskRef` per annotated region; masks are crops placed by ``MaskRef.box = (Left, Top, W, H)``.

Root is the ``covid_cxr`` folder. Images are referenced, never decoded here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from medmm.data.fields import UniqueIds, check_box, finite_number, label_value, text_value
from medmm.data.io import read_json
from medmm.data.io.text import read_csv_records
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import Box, ImageRef, MaskRef, Sample
from medmm.errors import BadInputError

METADATA = "metadata.csv"
# Columns kept as text/targets/ids; every other non-empty column goes to Sample.meta.
_NOT_META = {"patientid", "finding", "view", "modality", "filename", "clinical_notes", ""}
_MODALITY = {"x-ray": "XR", "xray": "XR", "ct": "CT"}

# Coarse, harmonised finding label (docs/datasets.md). Keys are lower-cased raw findings or
# parts of the later hierarchical form ("Pneumonia/Viral/COVID-19").
COVID = "COVID-19"
OTHER_PNEUMONIA = "other pneumonia"
NO_FINDING = "no finding"
OTHER = "other"
UNKNOWN = "unknown"
_UNKNOWN_RAW = {"", "todo", "unknown"}
_OTHER_PNEUMONIA_RAW = {
    "pneumonia", "sars", "mers", "mers-cov", "streptococcus", "pneumocystis", "klebsiella", "legionella",
    "chlamydophila", "mycoplasma bacterial pneumonia", "bacterial", "viral", "fungal", "e.coli",
    "staphylococcus", "aspergillosis", "influenza", "varicella", "nocardia", "herpes", "lobar pneumonia",
    "tuberculosis", "klebsiella pneumoniae", "mycoplasma",
}  # fmt: skip


def finding_group(finding: str) -> str:
    """Map a raw metadata.csv finding to one of: COVID-19, other pneumonia, no finding, other, unknown.

    Any mention of COVID-19 wins ("COVID-19, ARDS" -> COVID-19); "todo"/"Unknown"/blank ->
    unknown; named infectious pneumonias (viral, bacterial, fungal) -> other pneumonia;
    everything else (ARDS, lipoid pneumonia, ...) -> other.
    """
    raw = finding.strip().lower()
    parts = {p.strip() for chunk in raw.split(",") for p in chunk.split("/")} - {""}
    if "covid-19" in parts or "covid19" in parts:
        return COVID
    if raw in _UNKNOWN_RAW:
        return UNKNOWN
    if raw in {"no finding", "normal"} or parts == {"no finding"}:
        return NO_FINDING
    if parts & _OTHER_PNEUMONIA_RAW:
        return OTHER_PNEUMONIA
    return OTHER


def _read_csv(path: Path, errors: ErrorPolicy, required: set[str], key: str, *, comment: str | None = None) -> dict[str, dict[str, str]]:
    """Rows of a CSV keyed by column `key`; a bad or repeated row goes to `errors` (per row)."""
    header, records = read_csv_records(path, comment=comment)
    if not required <= set(header):
        raise BadInputError(path, f"missing columns {sorted(required - set(header))}")
    seen = UniqueIds(path, key)
    rows: dict[str, dict[str, str]] = {}
    for label, row in records:
        try:
            if isinstance(row, BadInputError):
                raise row
            name = row[key].strip()
            if not name:
                continue  # rows without a file name describe no image
            seen.add(name, label)
        except BadInputError as exc:
            errors.handle(exc)
            continue
        row["_line"] = label
        rows[name] = row
    return rows


def _read_metadata(root: Path, errors: ErrorPolicy, required: bool) -> dict[str, dict[str, str]]:
    """metadata.csv rows keyed by file name ({} if absent and not required)."""
    path = root / METADATA
    if not path.is_file():
        if required:
            raise BadInputError(path, "metadata.csv not found; root must be the covid_cxr folder")
        return {}
    return _read_csv(path, errors, {"patientid", "finding", "filename"}, "filename")


def _read_severity(root: Path, errors: ErrorPolicy) -> dict[str, dict[str, float]]:
    """covid-severity-scores.csv (lines starting '#' are comments) keyed by file name, or {}.

    A row with a missing or non-finite score is a bad record (counted), not a NaN score.
    """
    path = root / "covid-severity-scores.csv"
    if not path.is_file():
        return {}
    rows = _read_csv(path, errors, {"filename", "geographic_mean", "opacity_mean"}, "filename", comment="#")
    out: dict[str, dict[str, float]] = {}
    for name, r in rows.items():
        try:
            out[name] = {
                "geographic_extent_mean": finite_number(r["geographic_mean"], path, f"{r['_line']} ({name}) geographic_mean"),
                "opacity_mean": finite_number(r["opacity_mean"], path, f"{r['_line']} ({name}) opacity_mean"),
            }
        except BadInputError as exc:
            errors.handle(exc)
    return out


def _check_row(path: Path, row: dict[str, str]) -> None:
    """The fields of a metadata row that become targets, ids and text must be valid."""
    where = f"{row.get('_line', 'row')} ({row.get('filename', '').strip()})"
    label_value(row.get("patientid"), path, f"{where} patientid")
    label_value(row.get("finding"), path, f"{where} finding", required=False)
    text_value(row.get("clinical_notes"), path, f"{where} clinical_notes", required=False)


def _fill_from_metadata(s: Sample, row: dict[str, str] | None) -> None:
    """Copy targets, notes, ids and the per-image licence from a metadata row into s."""
    if row is None:
        s.meta["in_metadata"] = False
        return
    finding = row.get("finding", "").strip()
    s.targets["finding"] = finding
    s.targets["finding_group"] = finding_group(finding)
    notes = (row.get("clinical_notes") or "").strip()
    if notes:
        s.text["clinical_notes"] = notes
    s.patient_id = row.get("patientid", "").strip() or None
    for key, value in row.items():
        if key not in _NOT_META and not key.startswith("_") and (value or "").strip():
            s.meta[key] = value.strip()
    s.meta["license"] = (row.get("license") or "").strip() or "not stated"


def _image(path: Path, row: dict[str, str] | None, image_id: str) -> ImageRef:
    modality = _MODALITY.get((row or {}).get("modality", "").strip().lower()) if row else None
    view = ((row or {}).get("view") or "").strip() or None
    return ImageRef(path=path, modality=modality or ("XR" if row is None else None), view=view, image_id=image_id)


def _find_image(root: Path, row: dict[str, str]) -> Path | None:
    """The image file of a metadata row: original ``<folder>/<filename>`` or an annotated subset copy."""
    name = row["filename"].strip()
    folder = (row.get("folder") or "images").strip() or "images"
    for cand in (root / folder / name, root / "lung_bboxes" / "images" / name, root / "segmentations_100" / "images" / name):
        if cand.is_file():
            return cand
    return None


@register_dataset(
    "covid_cxr",
    splits=("all",),
    description="ieee8023 COVID-19 CXR metadata.csv: finding, view, clinical notes (images when present)",
    group_by="patient",
)
def load_covid_cxr(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """One sample per metadata.csv row; split is always "all"."""
    if split != "all":
        return []
    meta = _read_metadata(root, errors, required=True)
    severity = _read_severity(root, errors)
    out: list[Sample] = []
    for name, row in meta.items():
        try:
            if not row.get("patientid", "").strip():
                raise BadInputError(root / METADATA, f"{row['_line']}: row for {name!r} has no patientid")
            _check_row(root / METADATA, row)
        except BadInputError as exc:
            errors.handle(exc)
            continue
        s = Sample(id=name, dataset="covid_cxr", split="all", image_id=name)
        _fill_from_metadata(s, row)
        img = _find_image(root, row)
        if img is not None:
            s.images.append(_image(img, row, name))
        else:
            s.meta["image_missing"] = True  # metadata is usable alone (text-only diagnosis)
        if name in severity:
            s.meta["severity"] = severity[name]
        out.append(s)
    return out


@register_dataset(
    "covid_cxr_lungboxes",
    splits=("all",),
    description="ieee8023 COVID-19 CXR with COCO Right/Left Lung boxes (lung_bboxes/)",
    group_by="patient",
)
def load_covid_cxr_lungboxes(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """One sample per COCO image with its lung boxes, joined to metadata.csv when present."""
    if split != "all":
        return []
    ann_path = root / "lung_bboxes" / "annotations" / "annotations.json"
    if not ann_path.is_file():
        return []
    coco = read_json(ann_path)
    try:
        images, annotations = coco["images"], coco["annotations"]
        categories = {c["id"]: c["name"] for c in coco["categories"]}
        if not isinstance(images, list) or not isinstance(annotations, list):
            raise TypeError("images and annotations must be lists")
    except (KeyError, TypeError) as exc:
        raise BadInputError(ann_path, f"not a COCO annotation file: {type(exc).__name__}: {exc}") from exc
    meta = _read_metadata(root, errors, required=False)
    severity = _read_severity(root, errors)
    by_image: dict[object, list[dict]] = {}
    for a in annotations:
        by_image.setdefault(a.get("image_id") if isinstance(a, dict) else None, []).append(a)
    names, image_ids = UniqueIds(ann_path, "file_name"), UniqueIds(ann_path, "image id")

    out: list[Sample] = []
    for i, im in enumerate(images):
        try:
            if not isinstance(im, dict):
                raise BadInputError(ann_path, f"images[{i}] is not an object")
            name = text_value(im.get("file_name"), ann_path, f"images[{i}] (id {im.get('id')}) file_name")
            names.add(name, f"images[{i}]")
            image_ids.add(str(im.get("id")), f"images[{i}]")
            img_path = root / "lung_bboxes" / "images" / name
            if not img_path.is_file():
                raise BadInputError(img_path, "image listed in annotations.json is missing")
            row = meta.get(name)
            if row is not None:
                _check_row(root / METADATA, row)
            size = (im.get("width"), im.get("height"))
            boxes = []
            for a in by_image.get(im.get("id"), []):
                if a.get("category_id") not in categories:
                    raise BadInputError(ann_path, f"annotation {a.get('id')}: unknown category {a.get('category_id')}")
                x, y, w, h = check_box(a.get("bbox"), ann_path, f"annotation {a.get('id')} of {name}", size)
                boxes.append(Box(categories[a["category_id"]], x, y, w, h))
        except BadInputError as exc:
            errors.handle(exc)
            continue
        s = Sample(id=name, dataset="covid_cxr_lungboxes", split="all", image_id=name, boxes=boxes)
        _fill_from_metadata(s, row)
        if row is None:
            # The COCO file carries the metadata too; use its patient id so grouping still works.
            pid = str((im.get("metadata") or {}).get("patientid", "")).strip()
            s.patient_id = pid or None
        s.images.append(_image(img_path, row, name))
        s.meta["width"], s.meta["height"] = im.get("width"), im.get("height")
        if name in severity:
            s.meta["severity"] = severity[name]
        out.append(s)
    return out


def _region_rows(rows: Iterable[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    by_file: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_file.setdefault((r.get("Filename") or "").strip(), []).append(r)
    return by_file


@register_dataset(
    "covid_cxr_seg",
    splits=("all",),
    description="ieee8023 COVID-19 CXR with radiologist masks of 12 structures (segmentations_100/)",
    group_by="patient",
)
def load_covid_cxr_seg(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """One sample per segmented image; each region row with a mask file becomes a MaskRef."""
    if split != "all":
        return []
    seg = root / "segmentations_100"
    struct = seg / "structure.csv"
    if not struct.is_file():
        return []
    header, records = read_csv_records(struct)
    needed = {"Filename", "Template Name", "Mask", "Top", "Left", "Width", "Height"}
    if not needed <= set(header):
        raise BadInputError(struct, f"missing columns {sorted(needed - set(header))}")
    rows = []
    for _, row in records:
        if isinstance(row, BadInputError):
            errors.handle(row)  # one bad row (bytes, extra fields) spoils only itself
        else:
            rows.append(row)
    meta = _read_metadata(root, errors, required=False)
    severity = _read_severity(root, errors)
    out: list[Sample] = []
    for name, regions in _region_rows(rows).items():
        img_path = seg / "images" / name
        try:
            if not name:
                raise BadInputError(struct, f"{len(regions)} rows have an empty Filename")
            if not img_path.is_file():
                raise BadInputError(img_path, "image listed in structure.csv is missing")
            row = meta.get(name)
            if row is not None:
                _check_row(root / METADATA, row)
            masks, no_mask = [], []  # a label may repeat (two regions of one class): not an error
            for r in regions:
                label = text_value(r.get("Template Name"), struct, f"row {r.get('#')} Template Name")
                if not r.get("Mask", "").strip():
                    no_mask.append(label)  # e.g. "Monitoring Probes" rows: annotated, no mask file
                    continue
                mask_path = seg / r["Mask"].strip()
                if not mask_path.is_file():
                    raise BadInputError(mask_path, f"mask of {label!r} for {name} is missing")
                box = check_box([r[k] for k in ("Left", "Top", "Width", "Height")], struct, f"row {r.get('#')} of {name}")
                masks.append(MaskRef(label=label, path=str(mask_path), box=box))
        except BadInputError as exc:
            errors.handle(exc)
            continue
        s = Sample(id=name, dataset="covid_cxr_seg", split="all", image_id=name, masks=masks)
        _fill_from_metadata(s, row)
        s.images.append(_image(img_path, row, name))
        s.meta["resolution"] = (regions[0].get("Resolution") or "").strip()
        if no_mask:
            s.meta["regions_without_mask"] = no_mask
        if name in severity:
            s.meta["severity"] = severity[name]
        out.append(s)
    return out
