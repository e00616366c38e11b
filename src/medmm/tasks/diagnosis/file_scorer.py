"""The diagnosis task's file scorer (`medmm score --task diagnosis`), torch-free.

    pred {"id", "prediction": p | [p...]}  ref {"id", "reference": 0/1 | class index | [0/1/null per label]}

Binary, multi-class and multi-label metrics from scores (`medmm.metrics.classification`). The
old name ``classification`` still selects it, with a deprecation warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medmm.errors import BadInputError
from medmm.metrics.score import FileScorer, Prepared, as_float, group_ids, match_ids, read_records, register_scorer

_CLS_KEYS = ("auroc", "auprc", "f1", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ece",
             "f1_macro", "f1_micro", "auroc_macro_ovr", "auroc_macro", "auroc_micro", "auprc_macro",
             "auprc_micro", "sensitivity_macro", "specificity_macro", "balanced_accuracy_macro")


def prepare_classification(pred_path: Path, ref_path: Path, *, group_by: str | None = None, kind: str | None = None,
                           threshold: float = 0.5, labels: list[str] | None = None) -> Prepared:
    """Binary / multi-class / multi-label metrics from scores."""
    from medmm.metrics.classification import classification_metrics

    pred, ref = read_records(pred_path, "prediction"), read_records(ref_path, "reference")
    ids = match_ids(pred, ref, pred_path, ref_path)
    try:
        scores = np.asarray([pred[i]["prediction"] for i in ids], dtype=float)
    except (TypeError, ValueError) as exc:
        raise BadInputError(pred_path, f"predictions must be numbers or equal-length lists of numbers: {exc}") from exc
    try:
        truth = np.asarray([[np.nan if v is None else v for v in ref[i]["reference"]]
                            if isinstance(ref[i]["reference"], list) else ref[i]["reference"] for i in ids],
                           dtype=float)
    except (TypeError, ValueError) as exc:
        raise BadInputError(ref_path, f"references must be labels or equal-length lists of 0/1/null: {exc}") from exc
    if kind is None:
        kind = "binary" if scores.ndim == 1 else ("multilabel" if truth.ndim == 2 else "multiclass")
    try:
        result = classification_metrics(truth, scores, kind, threshold=threshold, labels=labels)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadInputError(pred_path, str(exc)) from exc
    result["kind"] = result["task"]  # binary / multiclass / multilabel; "task" becomes the task's name
    items = list(zip(truth, scores, strict=True))

    def aggregate(sel: list[Any]) -> dict[str, float]:
        t = np.stack([x[0] for x in sel])
        s = np.stack([x[1] for x in sel])
        m = classification_metrics(t, s, kind, threshold=threshold, labels=labels, with_provenance=False)  # type: ignore[arg-type]
        return {k: as_float(m[k]) for k in _CLS_KEYS if k in m}

    return Prepared(ids, result, items, aggregate, group_ids(ref, ids, group_by, ref_path))


SCORER = register_scorer("diagnosis", FileScorer(prepare_classification, ("kind", "threshold", "labels"), aliases=("classification",)))
