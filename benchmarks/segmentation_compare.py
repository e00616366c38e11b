"""Summarise segmentation run dirs and compare two of them on the same split.

    python benchmarks/segmentation_compare.py RUN_A [RUN_B] [--split val]
    python benchmarks/segmentation_compare.py RUN --text-ablation DATA_ROOT [--split val]

Prints, per run, mean Dice/IoU per class with the 95% bootstrap CI stored in
metrics/<split>.json, and for two runs a paired test of mean Dice (A - B) over the same
(image, class) examples (paired bootstrap + approximate randomisation, resampling patients;
`medmm.metrics.stats.paired_test`). ``--text-ablation`` re-scores a text-guided run with
each sample's text replaced by an empty string and by another sample's text (rotated by one),
to show whether the model uses what the text says.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from medmm.engine.selection import plain_names
from medmm.metrics.stats import paired_test


def _records(run: Path, split: str) -> dict[str, dict]:
    lines = (run / "predictions" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["id"]: r for r in (json.loads(x) for x in lines if x.strip())}


def summary(run: Path, split: str) -> str:
    """One markdown line per class: Dice and IoU with their CIs."""
    m = plain_names(json.loads((run / "metrics" / f"{split}.json").read_text())["metrics"])  # selection_* on val
    ci = m.get("ci", {})
    out = []
    for name, v in m["per_class"].items():
        d = ci.get(f"per_class/{name}/dice", {})
        i = ci.get(f"per_class/{name}/iou", {})
        out.append(f"| {run.name} | {name} | {v['n_images']} | {v['dice']:.3f} [{d.get('low', float('nan')):.3f}, "
                   f"{d.get('high', float('nan')):.3f}] | {v['iou']:.3f} [{i.get('low', float('nan')):.3f}, "
                   f"{i.get('high', float('nan')):.3f}] | {v['hd95'] if v['hd95'] is None else round(v['hd95'], 1)} |")
    return "\n".join(out)


def text_ablation(run: Path, root: str, split: str) -> dict[str, float]:
    """Mean Dice of a run with its own text, empty text and another sample's text."""
    import dataclasses

    from medmm.data import load_dataset
    from medmm.engine import load_run, run_inference

    cfg, task = load_run(run)
    samples = list(load_dataset(cfg.data.dataset, root, split).samples)
    texts = [dict(s.text) for s in samples]
    variants = {
        "own text": texts,
        "empty text": [dict.fromkeys(t, "") for t in texts],
        "other sample's text": texts[1:] + texts[:1],
    }
    out = {}
    for name, tx in variants.items():
        task._cache.clear()
        recs, _ = run_inference(task, [dataclasses.replace(s, text=t) for s, t in zip(samples, tx, strict=True)], cfg)
        out[name] = float(np.mean([r["dice"] for r in recs]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--text-ablation", metavar="DATA_ROOT")
    args = ap.parse_args()
    if args.text_ablation:
        print(json.dumps(text_ablation(args.runs[0], args.text_ablation, args.split), indent=1))
        return
    print("| run | class | images | Dice [95% CI] | IoU [95% CI] | HD95 px |\n|---|---|---:|---|---|---:|")
    for run in args.runs:
        print(summary(run, args.split))
    if len(args.runs) == 2:
        a, b = (_records(r, args.split) for r in args.runs)
        ids = sorted(set(a) & set(b))
        res = paired_test(lambda d: float(np.mean(d)), np.array([a[i]["dice"] for i in ids]),
                          np.array([b[i]["dice"] for i in ids]), groups=[a[i].get("group", i) for i in ids])
        print(json.dumps({"examples": len(ids), "dice_A_minus_B": res}, indent=1, default=str))


if __name__ == "__main__":
    main()
