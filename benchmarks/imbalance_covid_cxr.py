"""Imbalance methods compared on covid_cxr finding_group (COVID-19 dominates): macro-F1 and
balanced accuracy with patient-grouped bootstrap CIs and paired tests against plain CE.

    python benchmarks/imbalance_covid_cxr.py --out /tmp/imb [--fusion text_only] [--ce-run RUN_DIR] [overrides...]

Each method is the same config (configs/diagnosis/covid_cxr.yaml, same split, seed, budget)
with one `model.` change; "ce + thresholds" re-uses the CE run and tunes per-class thresholds
on its validation predictions (the same `tune_thresholds` the task's calibrate() calls).
Writes OUT/imbalance.md and OUT/imbalance.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from medmm.ablation import _read_jsonl
from medmm.engine import load_config
from medmm.engine.api import train
from medmm.metrics.stats import bootstrap_ci, paired_test
from medmm.tasks import losses as L
from medmm.tasks.diagnosis.headline import records_arrays
from medmm.tasks.diagnosis.metrics import decision_scores

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "configs/diagnosis/covid_cxr.yaml"
METHODS = {
    "ce": [],
    "weighted_ce": ["model.imbalance.loss=weighted_ce"],
    "focal (gamma 2)": ["model.imbalance.loss=focal"],
    "logit_adjusted (tau 1)": ["model.imbalance.loss=logit_adjusted"],
    "balanced_sampling": ["model.imbalance.balanced_sampling=true"],
}


def _scores(pred: np.ndarray, y: np.ndarray, n: int) -> dict[str, float]:
    d = decision_scores(y, pred, n)
    return {"f1_macro": d["f1_macro"], "balanced_accuracy": d["balanced_accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--fusion", default="text_only")
    ap.add_argument("--ce-run", default=None, help="an existing run of the same config to use as the CE run")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    base = list(a.overrides) + [f"model.fusion={a.fusion}", "data.split_seed=0", "seed=0"]
    preds: dict[str, np.ndarray] = {}
    ref = None
    for name, extra in METHODS.items():
        run = out / name.split()[0]
        if name == "ce" and a.ce_run and not (run / "predictions").exists():
            shutil.copytree(a.ce_run, run, dirs_exist_ok=True)
        if not (run / "predictions" / "test.jsonl").exists():
            train(load_config(CFG, base + extra, validate_model=True), run)
        ids, groups, y, p, classes = records_arrays(_read_jsonl(run / "predictions" / "test.jsonl"))
        if ref is None:
            ref = (ids, groups, y, classes)
        assert ids == ref[0], "methods must be scored on the same test samples"
        # logit adjustment trains on adjusted logits; its raw-logit softmax is the balanced posterior
        preds[name] = p.argmax(1)
        if name == "ce":
            _, _, vy, vp, _ = records_arrays(_read_jsonl(run / "predictions" / "val.jsonl"), classes)
            th = L.tune_thresholds(np.eye(len(classes))[vy], vp, "f1")
            preds["ce + thresholds (F1 on val)"] = L.predict_with_thresholds(p, th)
    ids, groups, y, classes = ref
    k = len(classes)
    rows = []
    for name, pred in preds.items():
        ci = bootstrap_ci(lambda pp, yy: _scores(pp, yy, k), pred, y, n_resamples=a.resamples, groups=groups)
        row = {"method": name}
        for m in ("f1_macro", "balanced_accuracy"):
            row[m] = ci["estimate"][m]
            row[m + "_ci"] = [ci["low"][m], ci["high"][m]]
            if name != "ce":
                t = paired_test(lambda pp, yy, m=m: _scores(pp, yy, k)[m], pred, preds["ce"], y, n_resamples=a.resamples, groups=groups)
                row[m + "_diff_vs_ce"] = t["difference"]
                row[m + "_p_vs_ce"] = t["p_randomisation"]
        row["predicted_counts"] = {c: int(np.sum(pred == i)) for i, c in enumerate(classes)}
        rows.append(row)
    counts = {c: int(np.sum(y == i)) for i, c in enumerate(classes)}
    (out / "imbalance.json").write_text(json.dumps({"rows": rows, "test_counts": counts, "overrides": base}, indent=1))
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["| method | macro-F1 [95% CI] | Δ vs CE (p) | balanced acc. [95% CI] | Δ vs CE (p) | predicted counts |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        d1 = "-" if r["method"] == "ce" else f"{r['f1_macro_diff_vs_ce']:+.3f} ({r['f1_macro_p_vs_ce']:.3f})"
        d2 = "-" if r["method"] == "ce" else f"{r['balanced_accuracy_diff_vs_ce']:+.3f} ({r['balanced_accuracy_p_vs_ce']:.3f})"
        lines.append(f"| {r['method']} | {f(r['f1_macro'])} [{f(r['f1_macro_ci'][0])}, {f(r['f1_macro_ci'][1])}] | {d1} "
                     f"| {f(r['balanced_accuracy'])} [{f(r['balanced_accuracy_ci'][0])}, {f(r['balanced_accuracy_ci'][1])}] | {d2} "
                     f"| {r['predicted_counts']} |")
    lines += ["", (f"Test reference counts: {counts}. CIs: percentile bootstrap over patient groups ({a.resamples} resamples); "
                   "p: approximate randomisation, paired with CE on the same samples.")]
    (out / "imbalance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
