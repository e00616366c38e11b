"""Segmentation metrics per class: Dice, IoU and the 95th-percentile Hausdorff distance.

Inputs are label maps (H, W) or (H, W, D) of integer class ids (0 = background), one pair
(prediction, reference) per image. HD95 follows MONAI's definition (boundary = mask XOR its
binary erosion; Euclidean distance of each boundary point to the other boundary;
95th percentile of each direction, the larger of the two), in pixels or in ``spacing`` units.

Empty masks are defined, not NaN:
  * both empty: Dice = IoU = 1, HD95 = 0 (nothing to find, nothing found);
  * exactly one empty: Dice = IoU = 0, HD95 undefined -> ``None``, left out of the HD95 mean
    and counted in ``hd95_undefined``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from medmm.metrics.provenance import provenance


def _boundary(mask: np.ndarray) -> np.ndarray:
    # scipy pads with background (border_value=0), so a mask touching the image edge has its
    # boundary there, as in MONAI
    return mask ^ ndimage.binary_erosion(mask)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float | None:
    """Symmetric 95th-percentile Hausdorff distance of two binary masks (None if one is empty)."""
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if not pred.any() and not ref.any():
        return 0.0
    if not pred.any() or not ref.any():
        return None
    bp, br = _boundary(pred), _boundary(ref)
    d_to_ref = ndimage.distance_transform_edt(~br, sampling=spacing)[bp]
    d_to_pred = ndimage.distance_transform_edt(~bp, sampling=spacing)[br]
    return float(max(np.percentile(d_to_ref, 95), np.percentile(d_to_pred, 95)))


def binary_scores(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> dict[str, Any]:
    """Dice, IoU and HD95 of one binary mask pair."""
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} masks differ in shape")
    inter = int(np.sum(pred & ref))
    total = int(pred.sum() + ref.sum())
    union = total - inter
    return {
        "dice": 2 * inter / total if total else 1.0,
        "iou": inter / union if union else 1.0,
        "hd95": hd95(pred, ref, spacing),
    }


class SegmentationMetric:
    """Accumulates per-image, per-class Dice/IoU/HD95; ``compute()`` averages over images.

    Args:
        classes: class ids to score (0 = background is never scored unless listed).
        names: optional display names, same order as ``classes``.
        spacing: pixel/voxel spacing for HD95 in physical units (default: pixels).
    """

    def __init__(self, classes: Sequence[int] = (1,), names: Sequence[str] | None = None,
                 spacing: Sequence[float] | None = None):
        if names is not None and len(names) != len(classes):
            raise ValueError("names and classes differ in length")
        self.classes = [int(c) for c in classes]
        self.names = [str(n) for n in names] if names is not None else [str(c) for c in self.classes]
        self.spacing = tuple(spacing) if spacing is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self.per_image: list[dict[str, dict[str, Any]]] = []

    def update(self, pred: np.ndarray, ref: np.ndarray) -> dict[str, dict[str, Any]]:
        """Score one image (label maps of equal shape); returns its per-class scores."""
        pred = np.asarray(pred)
        ref = np.asarray(ref)
        if pred.shape != ref.shape:
            raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
        if pred.ndim not in (2, 3):
            raise ValueError(f"label maps must be 2-D or 3-D, got {pred.ndim}-D")
        scores = {name: binary_scores(pred == c, ref == c, self.spacing)
                  for c, name in zip(self.classes, self.names, strict=True)}
        self.per_image.append(scores)
        return scores

    def compute(self) -> dict[str, Any]:
        """Mean Dice/IoU/HD95 per class and the mean over classes."""
        if not self.per_image:
            raise ValueError("no images to compute metrics from")
        per_class: dict[str, dict[str, Any]] = {}
        for name in self.names:
            rows = [img[name] for img in self.per_image]
            hds = [r["hd95"] for r in rows if r["hd95"] is not None]
            per_class[name] = {
                "dice": float(np.mean([r["dice"] for r in rows])),
                "iou": float(np.mean([r["iou"] for r in rows])),
                "hd95": float(np.mean(hds)) if hds else None,
                "hd95_undefined": len(rows) - len(hds),
                "n_images": len(rows),
            }
        hd_means = [v["hd95"] for v in per_class.values() if v["hd95"] is not None]
        return {
            "per_class": per_class,
            "dice_mean": float(np.mean([v["dice"] for v in per_class.values()])),
            "iou_mean": float(np.mean([v["iou"] for v in per_class.values()])),
            "hd95_mean": float(np.mean(hd_means)) if hd_means else None,
            "n_images": len(self.per_image),
        }


def segmentation_metrics(
    preds: Sequence[np.ndarray],
    refs: Sequence[np.ndarray],
    classes: Sequence[int] = (1,),
    *,
    names: Sequence[str] | None = None,
    spacing: Sequence[float] | None = None,
    with_provenance: bool = True,
) -> dict[str, Any]:
    """Per-class Dice, IoU, HD95 averaged over images (see module docstring for empty masks)."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    if len(preds) == 0:
        raise ValueError("no masks to score")
    metric = SegmentationMetric(classes, names, spacing)
    for p, r in zip(preds, refs, strict=True):
        metric.update(p, r)
    out = metric.compute()
    if with_provenance:
        out["provenance"] = provenance(
            "segmentation",
            implementation="medmm.metrics.segmentation (numpy/scipy; HD95 as MONAI HausdorffDistanceMetric(percentile=95))",
            n_samples=len(preds),
            label_handling={"both_empty": "dice=iou=1, hd95=0",
                            "one_empty": "dice=iou=0, hd95 undefined (excluded from its mean, counted)"},
            averaging="per class: mean over images; *_mean: mean over classes",
            spacing=list(spacing) if spacing is not None else "pixels",
        )
    return out
