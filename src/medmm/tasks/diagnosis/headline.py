"""Diagnosis's headline as per-sample units: class probabilities of labelled multi-class records,
scored with arg-max decisions (AUROC macro one-vs-rest, macro-F1, balanced accuracy, accuracy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medmm.errors import MedmmError
from medmm.metrics.headline import Units
from medmm.tasks.diagnosis.metrics import diagnosis_headline


def records_arrays(records: list[dict[str, Any]], classes: list[str] | None = None):
    """(ids, groups, y (N,), probs (N, C), classes) of labelled multi-class diagnosis records."""
    labelled = [r for r in records if r.get("reference") is not None]
    if not labelled:
        raise MedmmError("no labelled records to score")
    if isinstance(labelled[0]["reference"], dict):
        raise MedmmError("multi-label diagnosis records (one reference per class) have no multi-class headline units")
    classes = classes or list(labelled[0]["prediction"]["probs"])
    idx = {k: i for i, k in enumerate(classes)}
    ids = [r["id"] for r in labelled]
    groups = [r.get("group", r["id"]) for r in labelled]
    y = np.array([idx[r["reference"]] for r in labelled])
    p = np.array([[r["prediction"]["probs"][k] for k in classes] for r in labelled], dtype=float)
    return ids, groups, y, p, classes


def argmax_headline(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """AUROC macro one-vs-rest and the arg-max decision scores (the numbers `diagnosis_headline`
    gives, in the order tables show them)."""
    head = diagnosis_headline(y, probs, probs.argmax(axis=1))
    return {k: head[k] for k in ("auroc_macro_ovr", "f1_macro", "balanced_accuracy", "accuracy")}


def diagnosis_units(records: list[dict[str, Any]], key: str = "auroc_macro_ovr") -> Units:
    """One unit per labelled sample, grouped by patient: predictions (probabilities,), references (y,)."""
    ids, groups, y, p, _ = records_arrays(records)
    return Units([str(i) for i in ids], [str(g) for g in groups], (p,), (y,), argmax_headline)
