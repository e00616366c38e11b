"""The segmentation task's file scorer (`medmm score --task segmentation`), torch-free.

    pred {"id", "prediction": mask path}   ref {"id", "reference": mask path}

Paths are relative to the JSONL file's folder; nonzero = foreground, or label maps with
``classes``. Dice / IoU / HD95 per class (`medmm.metrics.segmentation`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from medmm.errors import BadInputError
from medmm.metrics.provenance import provenance
from medmm.metrics.score import FileScorer, Prepared, group_ids, match_ids, read_records, register_scorer


def _read_mask(path: Any, base: Path, jsonl: Path, rid: str) -> np.ndarray:
    from medmm.data.io import read_image

    if not isinstance(path, str) or not path.strip():
        raise BadInputError(jsonl, f"id {rid!r}: mask must be a file path")
    p = Path(path)
    arr = read_image(p if p.is_absolute() else base / p)
    if arr.ndim == 3:  # an RGB(A) export of a grey mask: channels must agree
        if not all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, min(arr.shape[-1], 3))):
            raise BadInputError(p, "colour mask: save masks as single-channel label maps")
        arr = arr[..., 0]
    return arr


def prepare_segmentation(pred_path: Path, ref_path: Path, *, group_by: str | None = None,
                         classes: list[int] | None = None, spacing: list[float] | None = None) -> Prepared:
    """Dice / IoU / HD95 per class from mask files (binary: nonzero = foreground, unless ``classes``)."""
    from medmm.metrics.segmentation import SegmentationMetric

    pred, ref = read_records(pred_path, "prediction"), read_records(ref_path, "reference")
    ids = match_ids(pred, ref, pred_path, ref_path)
    cls = classes or [1]
    names = None if classes else ["foreground"]
    metric = SegmentationMetric(cls, names, spacing)
    for i in ids:
        pm = _read_mask(pred[i]["prediction"], pred_path.parent, pred_path, i)
        rm = _read_mask(ref[i]["reference"], ref_path.parent, ref_path, i)
        if pm.shape != rm.shape:
            raise BadInputError(pred_path, f"id {i!r}: prediction mask {pm.shape} and reference {rm.shape} differ in size")
        if classes is None:
            pm, rm = (pm != 0).astype(np.uint8), (rm != 0).astype(np.uint8)
        metric.update(pm, rm)
    result = metric.compute()
    result["provenance"] = provenance(
        "segmentation",
        implementation="medmm.metrics.segmentation (numpy/scipy; HD95 as MONAI HausdorffDistanceMetric(percentile=95))",
        n_samples=len(ids),
        label_handling={"both_empty": "dice=iou=1, hd95=0",
                        "one_empty": "dice=iou=0, hd95 undefined (excluded from its mean, counted)",
                        "masks": "nonzero = foreground" if classes is None else f"label ids {cls}"},
        averaging="per class: mean over images; *_mean: mean over classes",
        spacing=list(spacing) if spacing is not None else "pixels")
    items = metric.per_image  # per-image scores, computed once

    def aggregate(sel: list[Any]) -> dict[str, float]:
        d: dict[str, float] = {}
        for name in sel[0]:
            for key in ("dice", "iou", "hd95"):
                vals = [row[name][key] for row in sel if row[name][key] is not None]
                d[f"{name}.{key}"] = float(np.mean(vals)) if vals else math.nan
        d["dice_mean"] = float(np.mean([d[f"{n}.dice"] for n in sel[0]]))
        return d

    return Prepared(ids, result, items, aggregate, group_ids(ref, ids, group_by, ref_path))


SCORER = register_scorer("segmentation", FileScorer(prepare_segmentation, ("classes", "spacing")))
