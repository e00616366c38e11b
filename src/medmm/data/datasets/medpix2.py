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

from medmm.data.io import read_json, read_jsonl
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, Sample
from medmm.errors import BadInputError

SPLITS = ("train", "dev", "test", "all")
_MODALITY = {"CT": "CT", "MR": "MR", "MRI": "MR"}


def _base(root: Path) -> Path:
    return root / "MedPix-2-0" if (root / "MedPix-2-0").is_dir() else root


def _clean(value: Any) -> str | None:
    """MedPix uses null, "" and "N/A" for absent fields."""
    if value is None:
        return None
    text = str(value).strip()
    return None if not text or text.upper() in {"N/A", "NA", "NONE", "NULL"} else text


def _records(base: Path, split: str, kind: str) -> list[Any] | None:
    """Records of `kind` ("descriptions" or "data") for `split`; None when the split is absent."""
    if split == "all":
        path = base / ("Descriptions.json" if kind == "descriptions" else "Case_topic.json")
        if not path.is_file():
            raise BadInputError(path, "MedPix 2.0 file not found (is root the MedPix-2-0 folder?)")
        data = read_json(path)
    else:
        path = base / "splitted_dataset" / f"{kind}_{split}.jsonl"
        if not path.is_file():
            return None
        data = read_jsonl(path)
    if not isinstance(data, list):
        raise BadInputError(path, "expected a list of records")
    return data


def _case_text(case: dict[str, Any]) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """(text, targets, meta) of one Case_topic record."""
    body = case.get("Case") or {}
    topic = case.get("Topic") or {}
    text: dict[str, str] = {}
    for key, field in (("History", "history"), ("Findings", "findings"), ("Case Diagnosis", "impression")):
        value = _clean(body.get(key))
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
        value = _clean(topic.get(key))
        if value:
            targets[field] = value
    meta = {
        "title": _clean(body.get("Title")),
        "exam": _clean(body.get("Exam")),
        "differential_diagnosis": _clean(body.get("Differential Diagnosis")),
        "topic_title": _clean(topic.get("Title")),
    }
    return text, targets, {k: v for k, v in meta.items() if v is not None}


def _cases_by_id(base: Path, split: str, errors: ErrorPolicy) -> dict[str, dict[str, Any]] | None:
    records = _records(base, split, "data")
    if records is None:
        return None
    cases: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not _clean(rec.get("U_id")):
            errors.handle(BadInputError(base, f"{split} case record {i} has no U_id"))
            continue
        cases[str(rec["U_id"]).strip()] = rec
    return cases


@register_dataset(
    "medpix2",
    splits=SPLITS,
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
    out: list[Sample] = []
    for i, rec in enumerate(descriptions):
        try:
            if not isinstance(rec, dict):
                raise BadInputError(base, f"{split} description record {i} is not an object")
            image, case_id = _clean(rec.get("image")), _clean(rec.get("U_id"))
            if not image or not case_id:
                raise BadInputError(base, f"{split} description record {i} lacks image or U_id")
            desc = rec.get("Description") or {}
            caption = _clean(desc.get("Caption"))
            if not caption:
                raise BadInputError(base, f"image {image}: empty caption")
            image_path = base / "images" / f"{image}.png"
            if not image_path.is_file():
                raise BadInputError(image_path, f"image of case {case_id} not found")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        modality = _MODALITY.get(str(rec.get("Type", "")).strip().upper())
        plane = _clean(desc.get("Plane"))
        text, targets, meta = _case_text(cases.get(case_id, {}))
        text = {"caption": caption, **{k: v for k, v in text.items() if k != "report"}}
        modality_detail = _clean(desc.get("Modality"))  # e.g. "CT w/contrast (IV)", "MR - T2 weighted"
        if modality_detail:
            targets["modality_detail"] = modality_detail
        if modality:
            targets["modality"] = modality
        if plane:
            targets["plane"] = plane
        for key, field in (("Location", "location"), ("Location Category", "location_category")):
            value = _clean(rec.get(key))
            if value:
                targets[field] = value
        meta.update(
            {
                k: v
                for k, v in (
                    ("age", _clean(desc.get("Age"))),
                    ("sex", _clean(desc.get("Sex"))),
                    ("acr_codes_image", _clean(desc.get("ACR Codes"))),
                )
                if v
            }
        )
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
    for case_id, rec in cases.items():
        try:
            images = []
            for key, modality in (("TAC", "CT"), ("MRI", "MR")):
                for name in rec.get(key) or []:
                    path = base / "images" / f"{name}.png"
                    if not path.is_file():
                        raise BadInputError(path, f"image of case {case_id} not found")
                    images.append(ImageRef(path=path, modality=modality, image_id=str(name)))
            if not images:
                raise BadInputError(base, f"case {case_id} lists no images")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        text, targets, meta = _case_text(rec)
        if "report" not in text:
            errors.handle(BadInputError(base, f"case {case_id} has no history, findings or diagnosis text"))
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
