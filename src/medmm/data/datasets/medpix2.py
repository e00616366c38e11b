"""MedPix 2.0 (Siragusa et al. 2025) in its original layout: image captions and case reports.

Root is the ``MedPix-2-0`` folder (or a folder holding it)::

    Descriptions.json        one record per image: Type (CT/MR), U_id (case), image, Description
                             {Caption, Modality, Plane, Age, Sex, ACR Codes}, Location, Location Category
    Case_topic.json          one record per case: U_id, TAC/MRI image lists, Case{History, Findings,
                             Case Diagnosis, ...}, Topic{ACR Code, Category, ...}
    images/<image>.png
    splitted_dataset/        descriptions_{train,dev,test}.jsonl and data_{train,dev,test}.jsonl
                             (case-level split: all images of a case are in one split)

Two datasets are registered:
  ``medpix2``        one Sample per image: text caption + the case's history, findings and
                     impression (= Case Diagnosis); targets modality (CT/MR), modality_detail, plane,
                     location, location_category, acr_category (Topic Category), acr_code.
  ``medpix2_cases``  one Sample per case: all its images, text history/findings/impression/report.
Splits: train, dev, test (from splitted_dataset/, [] when its files are absent) and "all"
(Descriptions.json + Case_topic.json, for building your own grouped split). Group by "case".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medmm.data.fields import UniqueIds, text_value
from medmm.data.io import read_json, read_jsonl
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, Sample
from medmm.errors import BadInputError

SPLITS = ("train", "dev", "test", "all")
_LOCATION = (("Location", "location"), ("Location Category", "location_category"))
_IMAGE_META = (("age", "Age"), ("sex", "Sex"), ("acr_codes_image", "ACR Codes"))
_MODALITY = {"CT": "CT", "MR": "MR", "MRI": "MR"}


def _base(root: Path) -> Path:
    return root / "MedPix-2-0" if (root / "MedPix-2-0").is_dir() else root


def _clean(value: Any, path: Path | None = None, what: str = "field") -> str | None:
    """A text field; MedPix uses null, "" and "N/A" for absent ones.

    A list, object or number where text belongs, NUL bytes or NaN -> BadInputError (see
    `medmm.data.fields.text_value`).
    """
    text = text_value(value, path, what, required=False)
    return None if text is None or text.upper() in {"N/A", "NA", "NONE", "NULL"} else text


def _records(base: Path, split: str, kind: str) -> list[Any] | None:
    """Records of `kind` ("descriptions" or "data") for `split`; None when the split is absent."""
    path = _records_path(base, split, kind)
    if split == "all":
        if not path.is_file():
            raise BadInputError(path, "MedPix 2.0 file not found (is root the MedPix-2-0 folder?)")
        data = read_json(path)
    else:
        if not path.is_file():
            return None
        data = read_jsonl(path)
    if not isinstance(data, list):
        raise BadInputError(path, "expected a list of records")
    return data


def _case_text(case: dict[str, Any], path: Path | None = None) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """(text, targets, meta) of one Case_topic record; a malformed field -> BadInputError."""
    body = case.get("Case") or {}
    topic = case.get("Topic") or {}
    uid = case.get("U_id")
    for part, value in (("Case", body), ("Topic", topic)):
        if not isinstance(value, dict):
            raise BadInputError(path, f"case {uid}: {part} is not an object")
    text: dict[str, str] = {}
    for key, field in (("History", "history"), ("Findings", "findings"), ("Case Diagnosis", "impression")):
        value = _clean(body.get(key), path, f"case {uid} {key}")
        if value:
            text[field] = value
    parts = [
        f"{k}: {text[f]}"
        for k, f in (("History", "history"), ("Findings", "findings"), ("Diagnosis", "impression"))
        if f in text
    ]
    if parts:
        text["report"] = "\n".join(parts)
    targets = {}
    for key, field in (("Category", "acr_category"), ("ACR Code", "acr_code")):
        value = _clean(topic.get(key), path, f"case {uid} Topic {key}")
        if value:
            targets[field] = value
    meta = {
        "title": _clean(body.get("Title"), path, f"case {uid} Title"),
        "exam": _clean(body.get("Exam"), path, f"case {uid} Exam"),
        "differential_diagnosis": _clean(body.get("Differential Diagnosis"), path, f"case {uid} Differential Diagnosis"),
        "topic_title": _clean(topic.get("Title"), path, f"case {uid} Topic Title"),
    }
    return text, targets, {k: v for k, v in meta.items() if v is not None}


def _records_path(base: Path, split: str, kind: str) -> Path:
    if split == "all":
        return base / ("Descriptions.json" if kind == "descriptions" else "Case_topic.json")
    return base / "splitted_dataset" / f"{kind}_{split}.jsonl"


def _cases_by_id(base: Path, split: str, errors: ErrorPolicy) -> dict[str, dict[str, Any]] | None:
    """Case records of `split` by U_id; a record without a U_id, or repeating one, is bad."""
    records = _records(base, split, "data")
    if records is None:
        return None
    path = _records_path(base, split, "data")
    ids = UniqueIds(path, "case U_id")
    cases: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(records):
        try:
            if not isinstance(rec, dict):
                raise BadInputError(path, f"case record {i} is not an object")
            uid = _clean(rec.get("U_id"), path, f"case record {i} U_id")
            if not uid:
                raise BadInputError(path, f"case record {i} has no U_id")
            ids.add(uid, f"case record {i}")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        cases[uid] = rec
    return cases


@register_dataset(
    "medpix2",
    splits=SPLITS,
    union_split="all",
    description="MedPix 2.0 CT/MR images with captions, modality/plane/location and their case reports",
    group_by="case",
)
def load_medpix2(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """One Sample per image of `split`."""
    base = _base(root)
    descriptions = _records(base, split, "descriptions")
    if descriptions is None:
        return []
    cases = _cases_by_id(base, split, errors) or {}
    path = _records_path(base, split, "descriptions")
    images_seen = UniqueIds(path, "image")
    out: list[Sample] = []
    for i, rec in enumerate(descriptions):
        try:
            if not isinstance(rec, dict):
                raise BadInputError(path, f"description record {i} is not an object")
            where = f"description record {i}"
            image, case_id = _clean(rec.get("image"), path, f"{where} image"), _clean(rec.get("U_id"), path, f"{where} U_id")
            if not image or not case_id:
                raise BadInputError(path, f"{where} lacks image or U_id")
            images_seen.add(image, where)
            desc = rec.get("Description") or {}
            if not isinstance(desc, dict):
                raise BadInputError(path, f"image {image}: Description is not an object")
            caption = _clean(desc.get("Caption"), path, f"image {image} Caption")
            if not caption:
                raise BadInputError(path, f"image {image}: empty caption")
            image_path = base / "images" / f"{image}.png"
            if not image_path.is_file():
                raise BadInputError(image_path, f"image of case {case_id} not found")
            plane = _clean(desc.get("Plane"), path, f"image {image} Plane")
            text, targets, meta = _case_text(cases.get(case_id, {}), _records_path(base, split, "data"))
            modality_detail = _clean(desc.get("Modality"), path, f"image {image} Modality")
            location = {f: _clean(rec.get(k), path, f"image {image} {k}") for k, f in _LOCATION}
            extra = {k: _clean(desc.get(key), path, f"image {image} {key}") for k, key in _IMAGE_META}
        except BadInputError as exc:
            errors.handle(exc)
            continue
        modality = _MODALITY.get(str(rec.get("Type", "")).strip().upper())
        text = {"caption": caption, **{k: v for k, v in text.items() if k != "report"}}
        if modality_detail:  # e.g. "CT w/contrast (IV)", "MR - T2 weighted"
            targets["modality_detail"] = modality_detail
        if modality:
            targets["modality"] = modality
        if plane:
            targets["plane"] = plane
        targets.update({k: v for k, v in location.items() if v})
        meta.update({k: v for k, v in extra.items() if v})
        out.append(
            Sample(
                id=image,
                dataset="medpix2",
                split=split,
                images=[ImageRef(path=image_path, modality=modality, view=plane, image_id=image)],
                text=text,
                targets=targets,
                case_id=case_id,
                image_id=image,
                meta=meta,
            )
        )
    return out


@register_dataset(
    "medpix2_cases",
    splits=SPLITS,
    union_split="all",
    description="MedPix 2.0 case reports: all CT/MR images of a case with history, findings and diagnosis",
    group_by="case",
)
def load_medpix2_cases(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """One Sample per case of `split`, holding all of the case's images (TAC = CT, MRI = MR)."""
    base = _base(root)
    cases = _cases_by_id(base, split, errors)
    if cases is None:
        return []
    out: list[Sample] = []
    path = _records_path(base, split, "data")
    for case_id, rec in cases.items():
        try:
            text, targets, meta = _case_text(rec, path)
            images = []
            for key, modality in (("TAC", "CT"), ("MRI", "MR")):
                names = rec.get(key) or []
                if not isinstance(names, list):
                    raise BadInputError(path, f"case {case_id}: {key} is not a list of image names")
                for name in names:
                    name = text_value(name, path, f"case {case_id} {key} image name")
                    image_path = base / "images" / f"{name}.png"
                    if not image_path.is_file():
                        raise BadInputError(image_path, f"image of case {case_id} not found")
                    images.append(ImageRef(path=image_path, modality=modality, image_id=str(name)))
            if not images:
                raise BadInputError(base, f"case {case_id} lists no images")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        if "report" not in text:
            errors.handle(BadInputError(path, f"case {case_id} has no history, findings or diagnosis text"))
            continue
        out.append(
            Sample(
                id=case_id,
                dataset="medpix2_cases",
                split=split,
                images=images,
                text=text,
                targets=targets,
                case_id=case_id,
                meta=meta,
            )
        )
    return out
