"""Trivial floors for a MedMNIST binary task, and a model's predictions tested against them (paired).

    python benchmarks/reproduce/medmnist_floors.py --data ../shared/data/medmnist --dataset breastmnist \
        --split val [--predictions runs/dx_breastmnist/predictions/val.jsonl] --out floors.json

Floors, both fitted on the train split of the same file only:
- majority: the train majority class for every image (AUROC 0.5 by construction);
- logreg_pixels: logistic regression on the raw 28x28 pixels (scaled to [0, 1], standardised);
  its inverse regularisation C is chosen by 5-fold stratified cross-validation AUROC on train
  (never on the scored split).
Each gets AUROC and accuracy (arg-max) with 95% percentile-bootstrap CIs over images; with
--predictions (a run's predictions jsonl, or `medmm predict` output with probabilities) the model
gets the same and the paired bootstrap difference model - floor with CI and p-value.
The positive class for AUROC is class index 1 of the file (BreastMNIST "normal, benign",
PneumoniaMNIST "pneumonia"); AUROC of a binary task is the same for either class.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import paired_record, write_result

from medmm.data.registry import load_dataset
from medmm.metrics.stats import bootstrap_ci

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _arrays(root: Path, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str], tuple[str, ...]]:
    samples = list(load_dataset(dataset, root, split).samples)  # a bad label raises
    if not samples:
        raise SystemExit(f"{dataset} at {root} has no {split!r} split")
    x = np.stack([np.asarray(s.images[0].array, np.float32).reshape(-1) / 255.0 for s in samples])
    y = np.asarray([s.meta["label_index"] for s in samples], int)
    return x, y, [s.id for s in samples], tuple(sorted({s.targets["label"] for s in samples}))


def _auroc(score: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if len(set(y.tolist())) == 2 else float("nan")


def _metrics(score: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """AUROC of P(class 1) and accuracy of the arg-max (P >= 0.5 -> class 1)."""
    return {"auroc": _auroc(score, y), "accuracy": float(np.mean((score >= 0.5).astype(int) == y))}


def fit_logreg(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[object, dict[str, float]]:
    """Standardise + logistic regression, C by 5-fold stratified CV AUROC on (x, y)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    search = GridSearchCV(
        pipe, {"logisticregression__C": list(C_GRID)}, scoring="roc_auc",
        cv=StratifiedKFold(5, shuffle=True, random_state=seed), n_jobs=1,
    )
    search.fit(x, y)
    cv = {str(c): float(s) for c, s in zip(C_GRID, search.cv_results_["mean_test_score"], strict=True)}
    return search.best_estimator_, cv


def _read_predictions(path: Path, ids: list[str], positive: str) -> np.ndarray:
    by_id = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            by_id[rec["id"]] = float(rec["prediction"]["probs"][positive])
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise SystemExit(f"{path}: no prediction for {len(missing)} of {len(ids)} images (e.g. {missing[0]})")
    return np.asarray([by_id[i] for i in ids])


def _with_ci(score: np.ndarray, y: np.ndarray, resamples: int) -> dict:
    ci = bootstrap_ci(_metrics, score, y, n_resamples=resamples)
    return {k: {"value": ci["estimate"][k], "ci95": [ci["low"][k], ci["high"][k]]} for k in ci["estimate"]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder holding the npz (or the npz file)")
    ap.add_argument("--dataset", required=True, help="registered name: breastmnist, pneumoniamnist, pneumoniamnist_trainsubset")
    ap.add_argument("--split", default="test", help="the split to score (val only where no test exists)")
    ap.add_argument("--predictions", type=Path, help="the model's predictions jsonl on that split")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    t0 = time.time()
    x_tr, y_tr, _, classes = _arrays(args.data, args.dataset, "train")
    x, y, ids, _ = _arrays(args.data, args.dataset, args.split)
    majority = int(np.bincount(y_tr).argmax())
    logreg, cv = fit_logreg(x_tr, y_tr)
    scores = {
        "majority": np.full(len(y), float(majority)),
        "logreg_pixels": logreg.predict_proba(x)[:, 1],
    }
    result: dict = {
        "dataset": args.dataset, "data": str(args.data), "split": args.split, "n": len(y),
        "n_per_class": {c: int((y == i).sum()) for i, c in enumerate(classes)},
        "train_n": len(y_tr), "train_majority": classes[majority],
        "logreg_C_by_train_cv": float(logreg[-1].C), "logreg_cv_auroc_by_C": cv,
        "floors": {name: _with_ci(s, y, args.resamples) for name, s in scores.items()},
    }
    if args.predictions is not None:
        model = _read_predictions(args.predictions, ids, classes[1])
        result["model"] = _with_ci(model, y, args.resamples)
        result["model_minus_floor"] = {}
        for name, s in scores.items():
            diff = {}
            for metric in ("auroc", "accuracy"):
                def fn(score, yy, metric=metric):
                    return _metrics(score, yy)[metric]
                if metric == "auroc" and name == "majority":
                    continue  # a constant score: AUROC 0.5 on every resample, nothing to test
                diff[metric] = paired_record(fn, model, s, y, n_resamples=args.resamples)
            result["model_minus_floor"][name] = diff
    result["seconds"] = round(time.time() - t0, 1)
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
