"""Metrics of segmentation records, torch-free: per-class mean Dice / IoU / HD95 over images,
their class means and bootstrap intervals resampling patients (`segmentation_summary`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _scores_of(records: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    per_class = {}
    for name in classes:
        rows = [r for r in records if r["label"] == name]
        if not rows:
            continue
        hds = [r["hd95"] for r in rows if r.get("hd95") is not None]
        per_class[name] = {
            "dice": float(np.mean([r["dice"] for r in rows])),
            "iou": float(np.mean([r["iou"] for r in rows])),
            "hd95": float(np.mean(hds)) if hds else math.nan,
        }
    return {
        "dice_mean": float(np.mean([v["dice"] for v in per_class.values()])) if per_class else math.nan,
        "iou_mean": float(np.mean([v["iou"] for v in per_class.values()])) if per_class else math.nan,
        "per_class": per_class,
    }


def segmentation_summary(records: list[dict[str, Any]], classes: list[str], n_resamples: int = 1000,
                         seed: int = 0) -> dict[str, Any]:
    """Per-class mean Dice/IoU/HD95 over images, their class means, and percentile-bootstrap
    95% CIs resampling patients (all examples of a patient move together)."""
    from medmm.metrics.provenance import provenance
    from medmm.metrics.stats import bootstrap_ci

    out = _scores_of(records, classes)
    for name, v in out["per_class"].items():
        rows = [r for r in records if r["label"] == name]
        v["hd95_undefined"] = sum(1 for r in rows if r.get("hd95") is None)
        v["n_images"] = len(rows)
        if math.isnan(v["hd95"]):
            v["hd95"] = None
    if n_resamples > 0 and records:
        ci = bootstrap_ci(lambda rs: _scores_of(rs, classes), list(records),
                          n_resamples=n_resamples, seed=seed, groups=[r.get("group", r["id"]) for r in records])
        keep = [k for k in ci["estimate"] if not k.endswith(".hd95") and k != "hd95"]
        out["ci"] = {k.replace(".", "/"): {"low": ci["low"][k], "high": ci["high"][k]} for k in keep}
        out["ci_method"] = ci["method"]
    out["n_examples"] = len(records)
    out["provenance"] = provenance(
        "segmentation",
        implementation="medmm.metrics.segmentation.binary_scores per (image, class) at the original mask resolution",
        n_samples=len(records),
        averaging="per class: mean over images; *_mean: mean over classes",
        label_handling={"both_empty": "dice=iou=1, hd95=0", "one_empty": "dice=iou=0, hd95 undefined (excluded, counted)"},
    )
    return out


__all__ = ["segmentation_summary"]
