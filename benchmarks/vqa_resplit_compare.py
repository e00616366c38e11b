"""Compare two VQA configurations over several random re-splits (paired, pooled over splits).

    python benchmarks/vqa_resplit_compare.py --a runs/base_0 runs/base_1 --b runs/ctx_0 runs/ctx_1 \
        --out benchmarks/vqa_rad_context_resplits.json

One held-out split of VQA-RAD's training questions has ~260 questions on ~130 images, so a
difference of 3 points is noise (95% CI ~ +-6). Training both systems on several split seeds
(``seed=S`` on the command line: it sets the split and the initialisation) and pooling the
held-out questions gives a tighter paired comparison. `--a` and `--b` list run folders in the
same seed order (run i of A and run i of B must share a split: checked by question ids). Per
run: accuracies from the run's own `predictions/test.jsonl`; pooled: the paired bootstrap +
approximate randomisation of `medmm.metrics.stats.paired_test`, resampling (split, image) groups.
`pooled_accuracy` gives one system's pooled accuracies with bootstrap CIs over the same groups.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def load_records(run: Path) -> list[dict[str, Any]]:
    """The held-out predictions a run wrote (one JSON record per question)."""
    path = run / "predictions" / "test.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: no held-out predictions (train the run with a test split)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def correct(records: list[dict[str, Any]]) -> np.ndarray:
    """1.0 where the prediction matches the reference (medmm's VQA answer normalisation)."""
    from medmm.tasks.vqa.answers import normalise_vqa_answer

    return np.array([float(normalise_vqa_answer(str(r["prediction"])) == normalise_vqa_answer(str(r["reference"])))
                     for r in records])


def split_groups(split: int, records: list[dict[str, Any]]) -> list[str]:
    """Resampling unit of each record: its image within its split (questions on one image are
    correlated, and the same image in two splits is scored by two different models)."""
    return [f"{split}:{r.get('group') or r['id']}" for r in records]


def pooled_accuracy(runs: list[Path], n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """One system pooled over its re-split runs: overall/closed/open accuracy with a percentile
    bootstrap 95% CI over (split, image) groups (the same groups as :func:`compare`)."""
    from medmm.metrics.stats import bootstrap_ci

    hits, groups, kinds = [], [], []
    for i, run in enumerate(runs):
        records = load_records(run)
        hits.append(correct(records))
        groups += split_groups(i, records)
        kinds += [r.get("answer_type", "") for r in records]
    h, k = np.concatenate(hits), np.array(kinds)

    def accuracy(h_: np.ndarray, k_: np.ndarray) -> dict[str, float]:
        # a resample without closed (open) questions leaves that accuracy undefined: NaN, counted as invalid
        return {name: float(h_[keep].mean()) if keep.any() else float("nan")
                for name, keep in (("overall", np.ones(len(h_), bool)), ("closed", k_ == "CLOSED"), ("open", k_ == "OPEN"))}

    ci = bootstrap_ci(accuracy, h, k, n_resamples=n_resamples, seed=seed, groups=groups)
    n = {"overall": len(h), "closed": int((k == "CLOSED").sum()), "open": int((k == "OPEN").sum())}
    out = {name: {"n": n[name], "accuracy": est, "low": ci["low"][name], "high": ci["high"][name]}
           for name, est in ci["estimate"].items() if est is not None}  # None: no question of that type
    return out | {"method": ci["method"], "n_groups": ci["n_units"]}


def compare(runs_a: list[Path], runs_b: list[Path], n_resamples: int = 1000) -> dict[str, Any]:
    """Per-run accuracies and the pooled paired test of A vs B (overall, closed, open)."""
    from medmm.metrics.stats import paired_test

    if len(runs_a) != len(runs_b) or not runs_a:
        raise SystemExit("--a and --b need the same number (>= 1) of runs")
    per_run, hits_a, hits_b, groups, kinds = [], [], [], [], []
    for i, (ra, rb) in enumerate(zip(runs_a, runs_b, strict=True)):
        a, b = load_records(ra), {r["id"]: r for r in load_records(rb)}
        if set(b) != {r["id"] for r in a}:
            raise SystemExit(f"{ra} and {rb} were not scored on the same held-out questions (different splits?)")
        b_list = [b[r["id"]] for r in a]
        ca, cb = correct(a), correct(b_list)
        per_run.append({"a": str(ra), "b": str(rb), "n": len(a), "a_accuracy": float(ca.mean()), "b_accuracy": float(cb.mean())})
        hits_a.append(ca)
        hits_b.append(cb)
        groups += split_groups(i, a)
        kinds += [r.get("answer_type", "") for r in a]
    ca, cb, kinds_arr = np.concatenate(hits_a), np.concatenate(hits_b), np.array(kinds)
    out: dict[str, Any] = {"runs": per_run, "pooled": {}}
    for name, keep in (("overall", np.ones(len(ca), bool)), ("closed", kinds_arr == "CLOSED"), ("open", kinds_arr == "OPEN")):
        if not keep.any():
            continue
        g = [x for x, k in zip(groups, keep, strict=True) if k]
        test = paired_test(lambda h: float(np.mean(h)), ca[keep], cb[keep], groups=g, n_resamples=n_resamples)
        out["pooled"][name] = {"n": int(keep.sum()), **test}
    return out


def main() -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, nargs="+", required=True)
    ap.add_argument("--b", type=Path, nargs="+", required=True)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    res = compare(args.a, args.b, args.resamples)
    for r in res["runs"]:
        print(f"{r['a']}: {r['a_accuracy']:.3f}  {r['b']}: {r['b_accuracy']:.3f}  (n {r['n']})")
    for name, t in res["pooled"].items():
        print(f"pooled {name} (n {t['n']}): A {t['a']:.3f} B {t['b']:.3f} diff {t['difference']:+.3f} "
              f"[{t['difference_low']:+.3f}, {t['difference_high']:+.3f}] p {t['p_bootstrap']:.3f} / {t['p_randomisation']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
