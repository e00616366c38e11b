"""MoNuSeg nucleus segmentation with the LViT sentence per image (text-guided segmentation).

Root is the ``MoNuSeg`` folder of the LViT layout (or the folder holding ``MoNuSeg/``)::

    Train_Folder/img/*.png  Train_Folder/labelcol/*.png  Train_Folder/Train_text.xlsx
    Val_Folder/...          Test_Folder/... (test images are .tif, the xlsx lists .png names)

Each xlsx has columns Image, Description; the description becomes ``text["sentence"]`` and the
mask ``MaskRef(label="nuclei")``. Patient id = the TCGA patient barcode (first three fields of
the image name), so a grouped split keeps one patient's slides together.
"""

from __future__ import annotations

from pathlib import Path

from medmm.data.fields import UniqueIds, text_value
from medmm.data.registry import ErrorPolicy, register_dataset
from medmm.data.schema import ImageRef, MaskRef, Sample
from medmm.errors import BadInputError

_FOLDERS = {"train": "Train", "val": "Val", "test": "Test"}
_IMAGE_EXTS = (".png", ".tif", ".tiff", ".jpg")


def _find_by_stem(folder: Path, stem: str) -> Path | None:
    """A file named stem + any image extension (the test xlsx says .png for .tif files)."""
    for ext in _IMAGE_EXTS:
        cand = folder / f"{stem}{ext}"
        if cand.is_file():
            return cand
    return None


def patient_of(image_name: str) -> str:
    """TCGA patient barcode of a slide name: 'TCGA-21-5784-01Z-00-DX1' -> 'TCGA-21-5784'."""
    parts = Path(image_name).stem.split("-")
    return "-".join(parts[:3]) if len(parts) >= 3 and parts[0] == "TCGA" else Path(image_name).stem


def _read_sheet(xlsx: Path) -> dict[str, list[object]]:
    """First sheet of an .xlsx as {header: raw column values} (openpyxl, no pandas)."""
    import openpyxl

    try:
        wb = openpyxl.load_workbook(xlsx, read_only=True, data_only=True)
        rows = list(wb.worksheets[0].iter_rows(values_only=True))
        wb.close()
    except Exception as exc:  # openpyxl raises many types for a broken workbook
        raise BadInputError(xlsx, f"cannot read workbook: {exc}") from exc
    if not rows:
        raise BadInputError(xlsx, "workbook is empty")
    header = [str(h).strip() if h is not None else "" for h in rows[0]]
    cols: dict[str, list[object]] = {h: [] for h in header}
    for row in rows[1:]:
        if all(v is None for v in row):
            continue
        if len(row) > len(header) and any(v is not None for v in row[len(header) :]):
            raise BadInputError(xlsx, f"a row has {len(row)} cells but the header names {len(header)} columns")
        for h, v in zip(header, row, strict=False):
            cols[h].append(v)
    return cols


@register_dataset(
    "monuseg_lvit",
    splits=("train", "val", "test"),
    description="MoNuSeg H&E nuclei masks + one LViT sentence per image (text-guided segmentation)",
    group_by="patient",
)
def load_monuseg_lvit(root: Path, split: str, errors: ErrorPolicy) -> list[Sample]:
    """Samples of Train_Folder / Val_Folder / Test_Folder; [] when the folder is absent."""
    if (root / "MoNuSeg").is_dir():  # also accept the monuseg_lvit folder above MoNuSeg/
        root = root / "MoNuSeg"
    prefix = _FOLDERS[split]
    folder = root / f"{prefix}_Folder"
    if not folder.is_dir():
        return []
    xlsx = folder / f"{prefix}_text.xlsx"
    if not xlsx.is_file():
        raise BadInputError(xlsx, "sentence file missing (LViT layout has <Split>_text.xlsx)")
    table = _read_sheet(xlsx)
    if not {"Image", "Description"} <= set(table):
        raise BadInputError(xlsx, f"needs columns Image, Description; has {list(table)}")

    out: list[Sample] = []
    names = UniqueIds(xlsx, "Image")
    for i, (name, sentence) in enumerate(zip(table["Image"], table["Description"], strict=False), start=2):
        try:
            name = text_value(name, xlsx, f"row {i} Image")
            names.add(Path(name).stem, f"row {i}")
            # A number or a date in the Description cell is a broken sheet, not a sentence.
            sentence = text_value(sentence, xlsx, f"row {i} ({name}) Description")
            stem = Path(name).stem
            img = _find_by_stem(folder / "img", stem)
            if img is None:
                raise BadInputError(folder / "img" / name, "image listed in the xlsx is missing")
            mask = _find_by_stem(folder / "labelcol", stem)
            if mask is None:
                raise BadInputError(folder / "labelcol" / name, "mask of this image is missing")
        except BadInputError as exc:
            errors.handle(exc)
            continue
        out.append(
            Sample(
                id=stem,
                dataset="monuseg_lvit",
                split=split,
                images=[ImageRef(path=img, modality="pathology", image_id=stem)],
                text={"sentence": sentence},
                masks=[MaskRef(label="nuclei", path=str(mask))],
                patient_id=patient_of(stem),
                image_id=stem,
                meta={"stain": "H&E"},
            )
        )
    return out
