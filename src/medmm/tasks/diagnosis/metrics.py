"""Diagnosis metrics, torch-free: every metric of a split's records (`diagnosis_metrics`), the
headline metrics that get bootstrap intervals (`diagnosis_headline`) and the scores of hard
decisions (`decision_scores`). `DiagnosisTask.compute_metrics` and its headline units (`headline.py`) use them.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def diagnosis_metrics(records: list[dict[str, Any]], classes: list[str], multilabel: bool, thresholded: bool = False,
                      n_resamples: int = 0, seed: int = 0) -> dict[str, Any]:
    """Metrics of diagnosis records (see `DiagnosisTask.compute_metrics`); torch-free.

    With `n_resamples` > 0, `ci` holds 95% percentile-bootstrap intervals of the headline
    metrics (`diagnosis_headline`), resampling the records' `group` (patient) so several images
    of one patient never narrow an interval falsely.
    """
    from medmm.metrics.classification import classification_metrics

    labelled = [r for r in records if r.get("reference") is not None]
    n_unlabelled = len(records) - len(labelled)
    if not labelled:
        return {"n_scored": 0, "n_unlabelled": n_unlabelled}
    if multilabel:
        y = np.array([[np.nan if r["reference"].get(k) is None else r["reference"][k] for k in classes] for r in labelled], float)
        s = np.array([[r["prediction"]["probs"][k] for k in classes] for r in labelled], float)
        out = classification_metrics(y, s, "multilabel", labels=classes, with_provenance=False)
        out.pop("reliability", None)
        out.update(n_scored=len(labelled), n_unlabelled=n_unlabelled)
        out.update(_headline_intervals(labelled, y, s, None, n_resamples, seed))
        return out
    idx = {k: i for i, k in enumerate(classes)}
    y = np.array([idx[r["reference"]] for r in labelled])
    s = np.array([[r["prediction"]["probs"][k] for k in classes] for r in labelled], float)
    out = classification_metrics(y, s, "multiclass", labels=classes, with_provenance=False)
    out.pop("reliability", None)
    pred = np.array([idx[r["prediction"]["label"]] for r in labelled])
    for key in ("accuracy", "balanced_accuracy", "f1_macro"):
        out[f"argmax_{key}"] = out[key]
    out.update(decision_scores(y, pred, len(classes)))
    out["decision_rule"] = "per-class thresholds tuned on validation" if thresholded else "argmax"
    cm = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(y, pred, strict=True):
        cm[t, p] += 1
    out["confusion_matrix"] = cm.tolist()
    out["labels"] = list(classes)
    out.update(n_scored=len(labelled), n_unlabelled=n_unlabelled)
    out.update(_headline_intervals(labelled, y, s, pred, n_resamples, seed))
    return out


def diagnosis_headline(y: np.ndarray, scores: np.ndarray, pred: np.ndarray | None) -> dict[str, float]:
    """The metrics that get CIs: multi-class (`pred` = final decisions) AUROC macro one-vs-rest
    and the decision scores; multi-label (`pred` None, NaN = missing label) AUROC macro.
    Fast numpy forms, equal to `classification_metrics`' (tested), for the bootstrap."""
    from medmm.metrics.classification import auroc_macro_multilabel, auroc_macro_ovr

    if pred is None:
        return {"auroc_macro": auroc_macro_multilabel(y, scores)}
    return {"auroc_macro_ovr": auroc_macro_ovr(y, scores), **decision_scores(y, pred, scores.shape[1])}


def _headline_intervals(labelled: list[dict[str, Any]], y: np.ndarray, scores: np.ndarray, pred: np.ndarray | None,
                        n_resamples: int, seed: int) -> dict[str, Any]:
    if n_resamples <= 0 or len(labelled) < 2:
        return {}
    from medmm.metrics.stats import bootstrap_ci

    groups = [str(r.get("group") or r["id"]) for r in labelled]
    if pred is None:
        ci = bootstrap_ci(lambda y_, s_: diagnosis_headline(y_, s_, None), y, scores,
                          n_resamples=n_resamples, seed=seed, groups=groups)
    else:
        ci = bootstrap_ci(diagnosis_headline, y, scores, pred, n_resamples=n_resamples, seed=seed, groups=groups)
    return {"ci": {k: [ci["low"][k], ci["high"][k]] for k in ci["estimate"]}, "ci_method": ci["method"],
            "n_groups": ci["n_units"]}


def decision_scores(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall over classes present) and macro-F1 (mean over
    all classes, 0 where undefined; sklearn's definitions) of hard decisions."""
    y, pred = np.asarray(y), np.asarray(pred)
    recalls, f1s = [], []
    for c in range(n_classes):
        tp = int(np.sum((pred == c) & (y == c)))
        fn = int(np.sum((pred != c) & (y == c)))
        fp = int(np.sum((pred == c) & (y != c)))
        if tp + fn:
            recalls.append(tp / (tp + fn))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {
        "accuracy": float(np.mean(pred == y)) if len(y) else float("nan"),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        "f1_macro": float(np.mean(f1s)),
    }
