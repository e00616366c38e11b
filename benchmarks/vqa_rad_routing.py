"""What predicting the closed/open routing from the question costs, against routing by the
answer_type annotation (an oracle input), on the same trained weights (paired, pooled over splits).

    for s in 0 1 2 3; do medmm train configs/vqa/vqa_rad_question_split.yaml seed=$s --out runs/routing/q$s; done
    python benchmarks/vqa_rad_routing.py runs/routing/q{0,1,2,3} --out benchmarks/vqa_rad_routing_results.json

Each run was trained with ``model.routing: predicted`` (its predictions/test.jsonl are routed by the
question-only classifier of `medmm.tasks.vqa.routing`). The routing only acts at inference (the
training loss masks by the training annotation either way), so the same weights are re-scored on
the same held-out questions with ``model.routing=annotation``; the held-out predictions of that
variant go to RUN_annotation/predictions/test.jsonl and both are compared with
`vqa_resplit_compare.compare` (paired bootstrap + approximate randomisation over (split, image)
groups). Also reported: the router's accuracy on the held-out questions and the floors of each
run's metrics/test.json (answer prior, question-only nearest neighbour).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vqa_resplit_compare import compare, pooled_accuracy


def annotation_variant(run: Path) -> Path:
    """RUN_annotation/predictions/test.jsonl: the run's weights re-scored with annotation routing."""
    from medmm.engine import rundir as rd
    from medmm.engine.api import load_run, run_inference
    from medmm.engine.data import load_splits

    out = run.parent / f"{run.name}_annotation"
    if (out / "predictions" / "test.jsonl").is_file():
        return out
    cfg, task = load_run(run, ["model.routing=annotation"])
    test = load_splits(cfg.data, cfg.seed)["test"].samples
    records, skipped = run_inference(task, test, cfg)
    if skipped:
        raise SystemExit(f"{run}: {len(skipped)} held-out samples skipped: {list(skipped)[:3]}")
    rd.write_jsonl(out / "predictions" / "test.jsonl", records)
    return out


def router_accuracy(run: Path) -> dict[str, Any]:
    records = [json.loads(x) for x in (run / "predictions" / "test.jsonl").read_text().splitlines() if x.strip()]
    hits = [r["routed_type"] == r["answer_type"] for r in records]
    return {"n": len(hits), "accuracy": sum(hits) / len(hits),
            "closed_routed_open": sum(r["answer_type"] == "CLOSED" and r["routed_type"] == "OPEN" for r in records),
            "open_routed_closed": sum(r["answer_type"] == "OPEN" and r["routed_type"] == "CLOSED" for r in records)}


def floors_of(run: Path) -> dict[str, Any]:
    m = json.loads((run / "metrics" / "test.json").read_text())
    return {name: dict(e.get("metrics", {})) | {
        "model_minus_floor_overall": e.get("model_minus_floor", {}).get("overall_accuracy")} for name, e in m["floors"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="runs trained with model.routing: predicted")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    annotated = [annotation_variant(r) for r in args.runs]
    res = {"predicted_vs_annotation": compare(args.runs, annotated, args.resamples),
           "predicted": pooled_accuracy(args.runs, args.resamples), "annotation": pooled_accuracy(annotated, args.resamples),
           "router": {str(r): router_accuracy(r) for r in args.runs},
           "floors": {str(r): floors_of(r) for r in args.runs}}
    for name, t in res["predicted_vs_annotation"]["pooled"].items():
        print(f"{name} (n {t['n']}): predicted {t['a']:.3f} annotation {t['b']:.3f} diff {t['difference']:+.3f} "
              f"[{t['difference_low']:+.3f}, {t['difference_high']:+.3f}] p {t['p_randomisation']:.3f}")
    for r, acc in res["router"].items():
        print(f"{r}: router accuracy {acc['accuracy']:.3f} (n {acc['n']})")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
