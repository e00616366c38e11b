"""Re-score trained VQA runs on their held-out split and compare two of them (paired, by image).

    python benchmarks/vqa_rad_heldout.py runs/vqa_rad runs/vqa_rad_kg --split test \
        --open-confidence 0.5 0.0 --out benchmarks/results/vqa_rad_heldout.json

For each run: the run's own data split (re-created from its config and seed, grouped by image),
predictions with the current code, metrics with grouped bootstrap CIs, once per routing
threshold given (`--open-confidence 0.0` = classifier only for open questions). With two runs,
a paired bootstrap + approximate randomisation test of overall accuracy (resampling images).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--split", default="test", help="role of the run's data config: train, val or test")
    ap.add_argument("--open-confidence", type=float, nargs="+", default=None)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from medmm.engine.api import load_run, run_inference
    from medmm.engine.data import load_splits
    from medmm.metrics.stats import paired_test
    from medmm.metrics.vqa import score_item
    from medmm.tasks.vqa import vqa_scores

    torch.set_num_threads(1)
    results: dict = {}
    default_records: dict = {}
    for run in args.runs:
        cfg, task = load_run(run)
        samples = load_splits(cfg.data, cfg.seed)[args.split].samples
        thresholds = args.open_confidence or [task.config.open_confidence]
        results[str(run)] = {}
        for th in thresholds:
            task.config.open_confidence = th
            records, skipped = run_inference(task, samples, cfg)
            m = vqa_scores(records, n_resamples=args.resamples)
            results[str(run)][f"open_confidence={th}"] = {
                k: m.get(k) for k in ("n", "n_closed", "n_open", "n_images", "overall_accuracy", "closed_accuracy",
                                      "open_exact_match", "open_token_f1", "open_bleu1", "ci", "ci_method", "routing")
            } | {"n_skipped": len(skipped)}
            if th == thresholds[0]:
                default_records[str(run)] = records
            print(run, th, json.dumps({k: m.get(k) for k in ("overall_accuracy", "closed_accuracy", "open_exact_match")}))
    if len(args.runs) == 2:
        a, b = (default_records[str(r)] for r in args.runs)
        by_id = {r["id"]: r for r in b}
        ids = [r["id"] for r in a if r["id"] in by_id]
        pa = [next(r for r in a if r["id"] == i) for i in ids]
        em = lambda recs: [score_item(r["prediction"], r["reference"], r["answer_type"])["exact_match"] for r in recs]  # noqa: E731
        test = paired_test(lambda x: sum(x) / len(x), em(pa), em([by_id[i] for i in ids]),
                           n_resamples=args.resamples, groups=[r["group"] for r in pa])
        results["paired_overall_accuracy"] = {"a": str(args.runs[0]), "b": str(args.runs[1]), **test}
        print("paired", json.dumps(test))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
