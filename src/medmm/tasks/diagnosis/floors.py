"""Diagnosis: the protocol record and the trivial floors (`Task.protocol`, `Task.floors` hooks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from medmm.data.schema import Sample

if TYPE_CHECKING:
    from medmm.tasks.diagnosis.task import DiagnosisTask

DIAGNOSIS_METRIC_DEFINITIONS = {
    "auroc_macro_ovr": "multi-class: mean over classes of the one-vs-rest AUROC of the predicted probabilities",
    "auroc_macro": "multi-label: mean over labels of the AUROC on the samples where the label is known",
    "accuracy": "fraction of labelled samples whose final decision (tuned thresholds, else arg-max) is the reference",
    "balanced_accuracy": "mean recall over the classes present", "f1_macro": "mean F1 over all classes (0 where undefined)",
    "ci": "95% percentile bootstrap, resampling patients",
}


def diagnosis_protocol(task: DiagnosisTask) -> dict[str, Any]:
    """Metric definitions; tuned thresholds are fitted on validation (their decision metrics
    are `selection_*` there)."""
    tuned = task.config.imbalance.threshold_tuning != "none" and not task.multilabel
    zero_shot = {"zero_shot": task.zero_shot.record()} if task.zero_shot is not None else {}
    return {**zero_shot,
        "metric_definitions": DIAGNOSIS_METRIC_DEFINITIONS,
        "oracle_inputs": [],
        "fitted_on_validation": [f"per-class decision thresholds (threshold_tuning={task.config.imbalance.threshold_tuning})"]
        if task.config.imbalance.threshold_tuning != "none" else [],
        "selection_metrics": ["accuracy", "balanced_accuracy", "f1_macro", "confusion_matrix"] if tuned else [],
    }


def diagnosis_floors(task: DiagnosisTask, train_samples: list[Sample], samples: list[Sample],
                     records: list[dict[str, Any]]) -> dict[str, Any]:
    """Prior, and logistic regressions on pixel thumbnails (image models) and TF-IDF of the text
    (text models), fit on the training samples (`medmm.metrics.floors.classification_floors`)."""
    from medmm.metrics import floors as F

    if task._external is not None:
        return {"skipped": "external validation: the floors are fit in the training dataset's label space"}
    labelled = [r for r in records if r.get("reference") is not None]
    by_id = {s.id: s for s in samples}
    ev = [by_id[r["id"]] for r in labelled]
    y_ev, scores = task._arrays(labelled)
    label = task._finding_vector if task.multilabel else task._class_index
    train = [s for s in train_samples if (task.multilabel or task._class_index(s) is not None)]
    if not ev or not train:
        return {"skipped": "no labelled evaluation or training samples"}
    ytr = np.asarray([label(s) for s in train], dtype=float if task.multilabel else int)
    if not task.multilabel:
        y_ev = y_ev.argmax(1)
    features: dict[str, tuple[Any, np.ndarray, Any]] = {}
    if task.uses_image:
        px = F.PixelThumbnails()
        with_img = [s for s in train if s.images]
        features["pixels"] = (px.matrix([s.images[0] for s in with_img]),
                              np.asarray([label(s) for s in with_img], dtype=ytr.dtype), px.matrix([s.images[0] for s in ev]))
    if task.uses_text:
        xtr, xev = F.tfidf([task.text_of(s) for s in train], [task.text_of(s) for s in ev])
        features["text_tfidf"] = (xtr, ytr, xev)
    return F.classification_floors(ytr, y_ev, scores, features, groups=[s.group("patient") for s in ev],
                                   n_resamples=task.config.bootstrap_resamples)

