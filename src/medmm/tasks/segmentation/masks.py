"""Segmentation masks as records carry them: run-length encoding (`rle_encode`, `rle_decode`),
the target of one prompted class (`class_target`) and the export of records' masks as PNG files
with the JSONL files `medmm score` reads (`export_masks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medmm.data.schema import Sample


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Row-major run lengths of a binary (H, W) mask, starting with a run of zeros."""
    flat = np.asarray(mask, dtype=bool).ravel()
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"shape": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of `rle_encode`: uint8 (H, W) mask."""
    h, w = (int(x) for x in rle["shape"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != h * w:
        raise ValueError(f"run lengths sum to {counts.sum()}, mask has {h * w} pixels")
    values = np.arange(len(counts)) % 2
    return np.repeat(values, counts).astype(np.uint8).reshape(h, w)


def class_target(sample: Sample, labels: list[str], shape: tuple[int, int]) -> np.ndarray | None:
    """Full-size binary mask: union of the sample's masks whose label is in ``labels``.

    A cropped mask (``MaskRef.box``, covid_cxr segmentations_100) is pasted at its box. A
    class the dataset lists as annotated without a mask file (``meta.regions_without_mask``)
    is unknown -> None (the example is left out). A class not annotated at all is empty
    (the annotators drew every structure present).
    """
    from medmm.data.io import read_mask

    missing = set(sample.meta.get("regions_without_mask") or [])
    refs = [m for m in sample.masks if m.label in labels]
    if not refs and missing & set(labels):
        return None
    out = np.zeros(shape, np.uint8)
    for ref in refs:
        out |= read_mask(ref, shape)
    return out


def export_masks(records: list[dict[str, Any]], out_dir: str | Path) -> tuple[Path, Path | None]:
    """Write each record's masks as PNG (0/255, original size) under out_dir/masks/ and the
    `medmm score` files out_dir/predictions.jsonl (+ references.jsonl when records carry
    references, with the patient as "group"). Returns the two JSONL paths."""
    import json

    from PIL import Image

    out_dir = Path(out_dir)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    preds, refs = [], []
    for i, r in enumerate(records):
        stem = f"{i:05d}_" + "".join(ch if ch.isalnum() else "_" for ch in str(r["id"]))[:60]
        Image.fromarray(rle_decode(r["prediction"]) * 255).save(out_dir / "masks" / f"{stem}_pred.png")
        preds.append({"id": r["id"], "prediction": f"masks/{stem}_pred.png"})
        if isinstance(r.get("reference"), dict):
            Image.fromarray(rle_decode(r["reference"]) * 255).save(out_dir / "masks" / f"{stem}_ref.png")
            refs.append({"id": r["id"], "reference": f"masks/{stem}_ref.png", "group": r.get("group", r["id"])})
    pred_path = out_dir / "predictions.jsonl"
    pred_path.write_text("".join(json.dumps(x) + "\n" for x in preds), encoding="utf-8")
    ref_path = None
    if refs:
        ref_path = out_dir / "references.jsonl"
        ref_path.write_text("".join(json.dumps(x) + "\n" for x in refs), encoding="utf-8")
    return pred_path, ref_path


__all__ = ["class_target", "export_masks", "rle_decode", "rle_encode"]
