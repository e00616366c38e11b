"""SLAKE 1.0 medical VQA (QA json + knowledge graph).

Root is the ``slake`` folder (or any folder holding ``Slake1.0/`` and ``KG/``)::

    Slake1.0/{train,validate,test}.json   Slake1.0/imgs/xmlab<N>/source.jpg (when present)
    KG/en_disease.csv  KG/en_organ.csv  KG/en_organ_rel.csv   ('#'-separated triplets)

Registered as ``slake`` (English questions, the official English split 4,919 / 1,053 / 1,061)
and ``slake_zh`` (the Chinese questions). Splits: train, validate, test. Within one language the
official splits are image-disjoint (checked on the shared copy), but across languages they are
not: 70 English-train images carry Chinese test questions. Never train on one language and
test on the other without re-splitting by "image".
Without ``imgs/`` samples carry no ImageRef and ``meta["image_missing"] = True``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from medmm.data.fields import UniqueIds, label_value, text_value
from medmm.data.io import read_json, read_text
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, Sample
from medmm.errors import BadInputError

SPLITS = ("train", "validate", "test")
KG_FILES = ("en_disease.csv", "en_organ.csv", "en_organ_rel.csv")
_MODALITY = {"CT": "CT", "MRI": "MR", "X-Ray": "XR"}


def _slake_dir(root: Path) -> Path:
    return root / "Slake1.0" if (root / "Slake1.0").is_dir() else root


def load_slake(root: Path, split: str, errors: ErrorPolicy, q_lang: str = "en") -> list[Sample]:
    """QA pairs of one split in language `q_lang` ("en" or "zh"); [] when the json is absent."""
    base = _slake_dir(root)
    path = base / f"{split}.json"
    if not path.is_file():
        return []
    items = read_json(path)
    if not isinstance(items, list):
        raise BadInputError(path, "expected a list of QA records")

    out: list[Sample] = []
    qids = UniqueIds(path, "qid")
    for i, qa in enumerate(items):
        try:
            if not isinstance(qa, dict):
                raise BadInputError(path, f"record {i} is not an object")
            missing = [k for k in ("qid", "img_id", "img_name", "question", "answer", "q_lang") if k not in qa]
            if missing:
                raise BadInputError(path, f"record {i} (qid {qa.get('qid')}) lacks {', '.join(missing)}")
            qids.add(str(qa["qid"]), f"record {i}", check=qa["q_lang"] == q_lang)
            if qa["q_lang"] != q_lang:
                continue
            if not str(qa["question"]).strip() or not str(qa["answer"]).strip():
                raise BadInputError(path, f"qid {qa['qid']}: empty question or answer")
            question = text_value(qa["question"], path, f"qid {qa['qid']} question")
            answer = text_value(qa["answer"], path, f"qid {qa['qid']} answer", integers_ok=True)
            text_value(qa["img_name"], path, f"qid {qa['qid']} img_name")
            for key in ("answer_type", "content_type", "location", "modality"):  # targets: NaN is no class
                label_value(qa.get(key), path, f"qid {qa['qid']} {key}", required=False)
        except BadInputError as exc:
            errors.handle(exc)
            continue
        image_id = str(qa["img_id"])
        img_path = base / "imgs" / str(qa["img_name"])
        modality = str(qa.get("modality") or "")
        meta = {
            "qid": qa["qid"],
            "img_name": qa["img_name"],
            "q_lang": q_lang,
            "base_type": qa.get("base_type"),
            "triple": qa.get("triple"),
        }
        images = []
        if img_path.is_file():
            images.append(ImageRef(path=img_path, modality=_MODALITY.get(modality, modality or None), image_id=image_id))
            mask = img_path.parent / "mask.png"
            if mask.is_file():
                meta["mask_path"] = str(mask)  # a label map over organs, not one binary mask
        else:
            meta["image_missing"] = True
        targets = {
            "answer_type": str(qa.get("answer_type") or ""),
            "content_type": str(qa.get("content_type") or ""),
            "location": str(qa.get("location") or ""),
            "modality": modality,
        }
        out.append(
            Sample(
                id=str(qa["qid"]),
                dataset="slake" if q_lang == "en" else f"slake_{q_lang}",
                split=split,
                images=images,
                text={"question": question, "answer": answer},
                targets={k: v for k, v in targets.items() if v},
                image_id=image_id,
                meta=meta,
            )
        )
    return out


@register_dataset(
    "slake",
    splits=SPLITS,
    description="SLAKE 1.0 VQA, English questions (images shared across the official splits)",
    group_by="image",
)
def load_slake_en(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """English SLAKE QA pairs of one split."""
    return load_slake(root, split, errors, q_lang="en")


@register_dataset(
    "slake_zh",
    splits=SPLITS,
    description="SLAKE 1.0 VQA, Chinese questions",
    group_by="image",
)
def load_slake_zh(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """Chinese SLAKE QA pairs of one split."""
    return load_slake(root, split, errors, q_lang="zh")


def load_kg(root: str | Path) -> list[tuple[str, str, str]]:
    """English SLAKE knowledge-graph triplets (head, relation, tail) from KG/en_*.csv.

    Order: en_disease.csv, en_organ.csv, en_organ_rel.csv, each in file order, header skipped.
    A missing KG file or a line without exactly three '#'-separated fields raises BadInputError.
    """
    root = Path(root)
    kg = root / "KG" if (root / "KG").is_dir() else root
    triples: list[tuple[str, str, str]] = []
    for name in KG_FILES:
        path = kg / name
        if not path.is_file():
            raise BadInputError(path, "SLAKE KG file not found")
        rows = list(csv.reader(read_text(path).splitlines(), delimiter="#", quoting=csv.QUOTE_NONE))
        for lineno, row in enumerate(rows[1:], start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != 3:
                raise BadInputError(path, f"line {lineno}: expected head#relation#tail, got {len(row)} fields")
            if any("\x00" in c for c in row):
                raise BadInputError(path, f"line {lineno}: contains a NUL byte")
            head, rel, tail = (c.strip() for c in row)
            triples.append((head, rel, tail))
    return triples
