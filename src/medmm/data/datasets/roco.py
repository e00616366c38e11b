"""ROCO radiology captions (text side of ROCO; the images must be fetched from PMC separately).

Root is the ``roco_captions_textonly`` folder or a roco-dataset checkout; files are read from
``data/<split>/radiology/``::

    captions.txt   ROCO_ID<TAB>caption        -> text["caption"]
    keywords.txt   ROCO_ID<TAB><TAB>kw<TAB>... -> meta["keywords"]
    cuis.txt       ROCO_ID<TAB><TAB>CUI<TAB>... -> meta["cuis"] (UMLS concept ids)

Splits: train, validation, test ([] when a split's captions.txt is absent; the shared copy lacks
train). Images are referenced when ``data/<split>/radiology/images/<ROCO_ID>.jpg`` exists
(a layout used by some download scripts); otherwise samples are text-only.
"""

from __future__ import annotations

from pathlib import Path

from medmm.data.fields import UniqueIds
from medmm.data.io import read_text
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, Sample
from medmm.errors import BadInputError


def _radiology_dir(root: Path, split: str) -> Path:
    return (root / "data" if (root / "data").is_dir() else root) / split / "radiology"


def _read_tsv(path: Path, errors: ErrorPolicy, want_text: bool) -> dict[str, list[str]]:
    """ROCO_ID -> the non-empty tab-separated fields after it ([caption] when want_text)."""
    out: dict[str, list[str]] = {}
    lines = read_text(path).splitlines()  # strict UTF-8: a bad byte is an error, never U+FFFD
    ids = UniqueIds(path, "ROCO id")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        roco_id, _, rest = line.partition("\t")
        roco_id = roco_id.strip()
        try:
            if not roco_id.startswith("ROCO_"):
                raise BadInputError(path, f"line {lineno}: does not start with a ROCO id")
            ids.add(roco_id, f"line {lineno}")
            if "\x00" in rest:
                raise BadInputError(path, f"line {lineno} ({roco_id}): contains a NUL byte")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        if want_text:
            caption = rest.strip()
            if not caption:
                errors.handle(BadInputError(path, f"line {lineno} ({roco_id}): empty caption"))
                continue
            out[roco_id] = [caption]
        else:
            out[roco_id] = [f.strip() for f in rest.split("\t") if f.strip()]
    return out


@register_dataset(
    "roco",
    splits=("train", "validation", "test"),
    description="ROCO radiology captions with UMLS CUIs and keywords (text only unless images present)",
    group_by="id",
)
def load_roco(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """One sample per caption of data/<split>/radiology/captions.txt."""
    folder = _radiology_dir(root, split)
    captions_path = folder / "captions.txt"
    if not captions_path.is_file():
        return []
    captions = _read_tsv(captions_path, errors, want_text=True)
    keywords = _read_tsv(folder / "keywords.txt", errors, False) if (folder / "keywords.txt").is_file() else {}
    cuis = _read_tsv(folder / "cuis.txt", errors, False) if (folder / "cuis.txt").is_file() else {}
    out = []
    for roco_id, (caption,) in captions.items():
        img = folder / "images" / f"{roco_id}.jpg"
        images = [ImageRef(path=img, image_id=roco_id)] if img.is_file() else []
        out.append(
            Sample(
                id=roco_id,
                dataset="roco",
                split=split,
                images=images,
                text={"caption": caption},
                image_id=roco_id,
                meta={"keywords": keywords.get(roco_id, []), "cuis": cuis.get(roco_id, [])},
            )
        )
    return out
