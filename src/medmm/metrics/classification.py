"""Classification metrics: binary, multi-class and multi-label, from scores (probabilities).

Shapes:
  * binary:     y_true (n,) in {0,1};        y_score (n,) probability of class 1
  * multiclass: y_true (n,) in 0..C-1;        y_score (n, C) class probabilities
  * multilabel: y_true (n, C) in {0,1} or NaN (NaN = label missing, left out for that label);
                y_score (n, C) per-label probabilities

A metric that is undefined on the data (AUROC when only one class is present) is reported
as ``None`` and explained in ``"undefined"``; it is never a silent NaN. Threshold-based
metrics use ``y_score >= threshold`` (binary, multi-label) or the arg-max (multi-class).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medmm.errors import require
from medmm.metrics.provenance import provenance

Task = Literal["binary", "multiclass", "multilabel"]


def _sk() -> Any:
    return require("sklearn.metrics", "train", "classification metrics")


def _check(y_true: np.ndarray, y_score: np.ndarray, task: Task) -> None:
    if len(y_true) == 0:
        raise ValueError("no samples to score")
    if len(y_true) != len(y_score):
        raise ValueError(f"y_true has {len(y_true)} samples, y_score has {len(y_score)}")
    if task == "binary" and y_score.ndim != 1:
        raise ValueError("binary task: y_score must be 1-D (probability of class 1)")
    if task in ("multiclass", "multilabel") and y_score.ndim != 2:
        raise ValueError(f"{task} task: y_score must be 2-D (samples x classes)")
    if task == "multilabel" and y_true.shape != y_score.shape:
        raise ValueError(f"multilabel: y_true {y_true.shape} and y_score {y_score.shape} differ")
    if not np.all(np.isfinite(y_score)):
        raise ValueError("y_score contains NaN or infinite values")


def _binary_block(y: np.ndarray, s: np.ndarray, threshold: float) -> tuple[dict[str, Any], list[str]]:
    """Metrics of one binary problem; returns (values, reasons for undefined values)."""
    sk = _sk()
    pred = (s >= threshold).astype(int)
    tp = int(np.sum((pred == 1) & (y == 1)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    undefined = []
    both = len(np.unique(y)) == 2
    if not both:
        undefined.append("auroc/auprc: only one class present")
    out = {
        "n": int(len(y)),
        "n_positive": int(np.sum(y == 1)),
        "auroc": float(sk.roc_auc_score(y, s)) if both else None,
        "auprc": float(sk.average_precision_score(y, s)) if both else None,
        "accuracy": float((tp + tn) / len(y)),
        # from the counts (sklearn's f1_score with zero_division=0 gives the same, 10x slower)
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "tp": tp, "tn": tn, "fp": fp, "fn": fn,
    }
    if tp + fn == 0:
        undefined.append("sensitivity: no positive samples")
    if tn + fp == 0:
        undefined.append("specificity: no negative samples")
    return out, undefined


def _mean_defined(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def auroc_binary(positive: np.ndarray, score: np.ndarray) -> float:
    """AUROC of one score for a boolean label (NaN when only one class is present).

    Mann-Whitney form with average ranks for ties (equal to sklearn's roc_auc_score, tested);
    written out because thousands of bootstrap resamples call it.
    """
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_macro_ovr(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean one-vs-rest AUROC of integer labels `y` over the classes present and absent in `y`
    (NaN if none)."""
    vals = [auroc_binary(y == c, probs[:, c]) for c in range(probs.shape[1])]
    vals = [v for v in vals if v == v]
    return float(np.mean(vals)) if vals else float("nan")


def auroc_macro_multilabel(y: np.ndarray, scores: np.ndarray) -> float:
    """Mean AUROC over the columns of a multi-label `y` (NaN = label missing, left out per
    column) whose known labels hold both classes (NaN if none)."""
    vals = []
    for c in range(scores.shape[1]):
        known = ~np.isnan(y[:, c])
        v = auroc_binary(y[known, c] == 1, scores[known, c])
        if v == v:
            vals.append(v)
    return float(np.mean(vals)) if vals else float("nan")


def reliability(
    y_true: np.ndarray, y_score: np.ndarray, task: Task = "binary", n_bins: int = 10
) -> dict[str, Any]:
    """Reliability-diagram data and expected calibration error (equal-width bins).

    Binary and multi-label: bins of predicted probability vs observed positive rate (every
    label's probability is one point). Multi-class: top-label confidence vs accuracy.
    ECE = sum_b (n_b / N) * |observed_b - confidence_b|.
    """
    y_true = np.asarray(y_true, dtype=float)
    y_score = np.asarray(y_score, dtype=float)
    if task == "multiclass":
        conf = y_score.max(axis=1)
        hit = (y_score.argmax(axis=1) == y_true).astype(float)
    else:
        conf, hit = y_score.ravel(), y_true.ravel()
        keep = np.isfinite(hit)
        conf, hit = conf[keep], hit[keep]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed last bin so a probability of exactly 1.0 is counted
    which = np.clip(np.digitize(conf, edges[1:-1], right=False), 0, n_bins - 1)
    counts, mean_conf, observed = [], [], []
    ece = 0.0
    for b in range(n_bins):
        m = which == b
        k = int(m.sum())
        counts.append(k)
        if k:
            c, o = float(conf[m].mean()), float(hit[m].mean())
            ece += k / len(conf) * abs(o - c)
        else:
            c = o = None
        mean_conf.append(c)
        observed.append(o)
    return {
        "ece": float(ece),
        "bin_edges": edges.tolist(),
        "bin_count": counts,
        "bin_confidence": mean_conf,
        "bin_observed": observed,
        "kind": "top-label" if task == "multiclass" else "probability",
    }


def plot_reliability(data: dict[str, Any], path: str | Path, title: str = "Reliability") -> Path:
    """Save a reliability diagram (PNG) from :func:`reliability` output."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt

    edges = np.asarray(data["bin_edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    obs = [o if o is not None else 0.0 for o in data["bin_observed"]]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.bar(centers, obs, width=edges[1] - edges[0], edgecolor="k", alpha=0.7, label="observed")
    ax.plot([0, 1], [0, 1], "r--", label="perfect")
    ax.set_xlabel("confidence" if data.get("kind") == "top-label" else "predicted probability")
    ax.set_ylabel("accuracy" if data.get("kind") == "top-label" else "observed frequency")
    ax.set_title(f"{title} (ECE={data['ece']:.3f})")
    ax.legend(loc="upper left")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def classification_metrics(
    y_true: Sequence[Any] | np.ndarray,
    y_score: Sequence[Any] | np.ndarray,
    task: Task = "binary",
    *,
    threshold: float = 0.5,
    labels: Sequence[str] | None = None,
    n_bins: int = 10,
    with_provenance: bool = True,
) -> dict[str, Any]:
    """AUROC, AUPRC, F1 (macro/micro), accuracy, balanced accuracy, sensitivity/specificity,
    ECE and reliability data; per class for multi-class and multi-label."""
    sk = _sk()
    y_true = np.asarray(y_true, dtype=float)
    y_score = np.asarray(y_score, dtype=float)
    _check(y_true, y_score, task)
    n_cols = 1 if task == "binary" else y_score.shape[1]
    if labels is not None and task != "binary" and len(labels) != n_cols:
        raise ValueError(f"{len(labels)} label names for {n_cols} score columns")
    undefined: dict[str, list[str]] = {}
    out: dict[str, Any] = {"task": task, "threshold": threshold if task != "multiclass" else None}
    if task == "binary":
        if not np.isin(y_true, (0, 1)).all():
            raise ValueError("binary y_true must be 0/1")
        block, why = _binary_block(y_true.astype(int), y_score, threshold)
        out.update(block)
        sens, spec = out["sensitivity"], out["specificity"]
        # sklearn's balanced_accuracy_score: mean recall over the classes present
        out["balanced_accuracy"] = float(np.mean([v for v in (sens, spec) if v is not None]))
        if why:
            undefined["overall"] = why
    elif task == "multiclass":
        n_classes = y_score.shape[1]
        y = y_true.astype(int)
        if np.any(y != y_true) or y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"multiclass y_true must be integers in 0..{n_classes - 1}")
        pred = y_score.argmax(axis=1)
        names = list(labels) if labels else [str(c) for c in range(n_classes)]
        per_class = {}
        for c, name in enumerate(names):
            block, why = _binary_block((y == c).astype(int), y_score[:, c], -np.inf)
            # one-vs-rest counts come from the arg-max prediction, not a threshold
            p = (pred == c)
            t = (y == c)
            tp, fn = int(np.sum(p & t)), int(np.sum(~p & t))
            tn, fp = int(np.sum(~p & ~t)), int(np.sum(p & ~t))
            block.update(tp=tp, fn=fn, tn=tn, fp=fp,
                         sensitivity=tp / (tp + fn) if tp + fn else None,
                         specificity=tn / (tn + fp) if tn + fp else None,
                         f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
            block.pop("accuracy")
            per_class[name] = block
            if why:
                undefined[name] = why
        out["per_class"] = per_class
        out["accuracy"] = float(np.mean(pred == y))
        # sklearn definitions: balanced accuracy = mean recall over classes present in y_true;
        # macro F1 = mean over all classes (0 where undefined); micro F1 = accuracy here
        out["balanced_accuracy"] = float(np.mean([b["sensitivity"] for b in per_class.values()
                                                  if b["sensitivity"] is not None]))
        out["f1_macro"] = float(np.mean([b["f1"] for b in per_class.values()]))
        out["f1_micro"] = out["accuracy"]
        out["auroc_macro_ovr"] = _mean_defined([b["auroc"] for b in per_class.values()])
        out["auprc_macro"] = _mean_defined([b["auprc"] for b in per_class.values()])
    else:
        n_labels = y_score.shape[1]
        names = list(labels) if labels else [str(c) for c in range(n_labels)]
        finite = np.isfinite(y_true)
        if not np.isin(y_true[finite], (0, 1)).all():
            raise ValueError("multilabel y_true must be 0/1 (NaN = missing)")
        per_label = {}
        for c, name in enumerate(names):
            keep = finite[:, c]
            if not keep.any():
                undefined[name] = ["no non-missing labels"]
                continue
            block, why = _binary_block(y_true[keep, c].astype(int), y_score[keep, c], threshold)
            per_label[name] = block
            if why:
                undefined[name] = why
        out["per_label"] = per_label
        for key in ("auroc", "auprc", "f1", "sensitivity", "specificity", "accuracy"):
            out[f"{key}_macro"] = _mean_defined([b[key] for b in per_label.values()])
        yt, ys = y_true[finite], y_score[finite]
        both = len(np.unique(yt)) == 2
        out["auroc_micro"] = float(sk.roc_auc_score(yt, ys)) if both else None
        out["auprc_micro"] = float(sk.average_precision_score(yt, ys)) if both else None
        tp = sum(b["tp"] for b in per_label.values())
        fn = sum(b["fn"] for b in per_label.values())
        tn = sum(b["tn"] for b in per_label.values())
        fp = sum(b["fp"] for b in per_label.values())
        out["f1_micro"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        out["sensitivity_micro"] = tp / (tp + fn) if tp + fn else None
        out["specificity_micro"] = tn / (tn + fp) if tn + fp else None
        out["balanced_accuracy_macro"] = _mean_defined(
            [None if b["sensitivity"] is None or b["specificity"] is None
             else (b["sensitivity"] + b["specificity"]) / 2 for b in per_label.values()])
        rows_complete = finite.all(axis=1)
        out["subset_accuracy"] = (
            float(np.mean(np.all((y_score[rows_complete] >= threshold) == (y_true[rows_complete] == 1), axis=1)))
            if rows_complete.any() else None)
    rel = reliability(y_true, y_score, task, n_bins)
    out["ece"] = rel["ece"]
    out["reliability"] = rel
    out["undefined"] = undefined
    if with_provenance:
        out["provenance"] = provenance(
            "classification",
            implementation="medmm.metrics.classification (scikit-learn roc_auc_score, average_precision_score; counts-based F1)",
            n_samples=len(y_true),
            label_handling={"multilabel_missing": "NaN labels left out per label",
                            "threshold": threshold if task != "multiclass" else "argmax"},
            averaging="macro = unweighted mean over classes/labels with a defined value; "
                      "micro = pooled over all (sample, label) pairs",
            ece_bins=n_bins,
        )
    return out


class ClassificationMetric:
    """Accumulates (y_true, y_score) batches; ``compute()`` calls :func:`classification_metrics`."""

    def __init__(self, task: Task = "binary", **kwargs: Any):
        self.task = task
        self.kwargs = kwargs
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._true: list[np.ndarray] = []
        self._score: list[np.ndarray] = []

    def update(self, y_true: Any, y_score: Any) -> None:
        """Add one batch (numpy arrays or lists)."""
        self._true.append(np.asarray(y_true, dtype=float))
        self._score.append(np.asarray(y_score, dtype=float))

    def compute(self) -> dict[str, Any]:
        """Metrics over every batch since the last reset."""
        if not self._true:
            raise ValueError("no batches to compute metrics from")
        return classification_metrics(
            np.concatenate(self._true), np.concatenate(self._score), self.task, **self.kwargs)
