"""Per-system prediction files and paired tests from report-generation predictions (`medmm predict`).

    python benchmarks/report_compare.py PRED.jsonl [PRED2.jsonl ...] --out DIR [--bootstrap 1000] [--no-tests]
        [--exclude-placeholders]

Each PRED file holds the records of one run on one split (same ids, same order). Every system
found in the records becomes DIR/<name>.jsonl ({id, prediction}); DIR/ref.jsonl holds {id,
reference, group}. System names: the run's file stem for "prediction" ("beam_prediction" ->
<stem>_beam) and, from the first file, the baselines: nn (nearest neighbour with the run's
retrieval key), nn_thumbnail, nn_consensus, typical_consensus (whichever the records hold). Then, unless --no-tests, every model system is
compared with every baseline (and the models with each other) by exactly what

    medmm score --task report --pred A.jsonl --compare B.jsonl --ref ref.jsonl --bootstrap N --group-by group

computes (`medmm.metrics.score.compare_files`), written to DIR/<A>_vs_<B>.json, and a markdown
table of the CIDEr-D, ROUGE-L and BLEU-1 differences is printed. Also writes DIR/scores.json
with each system's metrics and CIs (`score_files`, same bootstrap).

--exclude-placeholders drops the records whose reference is a MedPix placeholder rather than a
caption ("Replace this - DESCRIPTION OF THE IMAGE OR FINDINGS.", "IN PROGRESS"): an exact copy of
one scores CIDEr-D 10, i.e. +0.05 on a 197-image mean, so results are also shown without them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medmm import plugins
from medmm.metrics.provenance import write_metrics
from medmm.metrics.score import compare_files, score_files

plugins.load_scorers()  # the built-in file scorers, also where the entry-point metadata is stale

BASELINES = {"nn_prediction": "nn", "nn_thumbnail_prediction": "nn_thumbnail", "nn_consensus_prediction": "nn_consensus",
             "typical_consensus_prediction": "typical_consensus"}
HEADLINE = ("nlg.cider_d", "nlg.rouge_l", "nlg.bleu_1")
PLACEHOLDERS = ("replace this", "in progress")


def is_placeholder(reference: str) -> bool:
    """A MedPix placeholder reference (see the module docstring)."""
    return reference.strip().lower().startswith(PLACEHOLDERS)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def split_systems(files: list[Path], out: Path, exclude_placeholders: bool = False) -> tuple[list[str], list[str]]:
    """Write DIR/<system>.jsonl and DIR/ref.jsonl; returns (model systems, baseline systems)."""
    out.mkdir(parents=True, exist_ok=True)
    keep = (lambda r: not is_placeholder(r["reference"])) if exclude_placeholders else (lambda r: True)
    first = [r for r in read_jsonl(files[0]) if keep(r)]
    ids = [r["id"] for r in first]
    write_jsonl(out / "ref.jsonl", [{"id": r["id"], "reference": r["reference"], "group": r.get("group") or r["id"]} for r in first])
    models, baselines = [], []
    for f in files:
        recs = [r for r in read_jsonl(f) if keep(r)]
        if [r["id"] for r in recs] != ids:
            raise SystemExit(f"{f}: ids or their order differ from {files[0]}")
        for field, name in (("prediction", f.stem), ("beam_prediction", f"{f.stem}_beam")):
            if field in recs[0]:
                write_jsonl(out / f"{name}.jsonl", [{"id": r["id"], "prediction": r[field]} for r in recs])
                models.append(name)
    for field, name in BASELINES.items():
        if field in first[0]:
            write_jsonl(out / f"{name}.jsonl", [{"id": r["id"], "prediction": r[field]} for r in first])
            baselines.append(name)
    return models, baselines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pred", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--no-tests", action="store_true")
    ap.add_argument("--exclude-placeholders", action="store_true")
    args = ap.parse_args()
    models, baselines = split_systems(args.pred, args.out, args.exclude_placeholders)
    ref = args.out / "ref.jsonl"
    scores = {}
    for name in models + baselines:
        res = score_files("report_generation", args.out / f"{name}.jsonl", ref, bootstrap=args.bootstrap, seed=0, group_by="group")
        scores[name] = {"nlg": res["nlg"], "clinical_efficacy_micro_f1": res["clinical_efficacy"]["micro"]["f1"],
                        "ci": res.get("ci", {})}
    (args.out / "scores.json").write_text(json.dumps(scores, indent=1), encoding="utf-8")
    print("| system | CIDEr-D [95% CI] | ROUGE-L | BLEU-1 | BLEU-4 | METEOR |")
    print("|---|---|---|---|---|---|")
    for name, s in scores.items():
        ci = s["ci"].get("nlg.cider_d", {})
        print(f"| {name} | {s['nlg']['cider_d']:.3f} [{ci.get('low', float('nan')):.3f}, {ci.get('high', float('nan')):.3f}] | "
              f"{s['nlg']['rouge_l']:.3f} | {s['nlg']['bleu_1']:.3f} | {s['nlg']['bleu_4']:.3f} | {s['nlg']['meteor']:.3f} |")
    if args.no_tests:
        return
    pairs = [(m, b) for m in models for b in baselines] + [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
    print("\n| A vs B | CIDEr-D diff [95% CI], p (bootstrap / randomisation) | ROUGE-L diff, p | BLEU-1 diff, p |")
    print("|---|---|---|---|")
    for a, b in pairs:
        res = compare_files("report_generation", args.out / f"{a}.jsonl", args.out / f"{b}.jsonl", ref,
                            n_resamples=args.bootstrap, seed=0, group_by="group")
        write_metrics(args.out / f"{a}_vs_{b}.json", res)
        cells = []
        for key in HEADLINE:
            t = res["tests"][key]
            cells.append(f"{t['difference']:+.3f} [{t['difference_low']:+.3f}, {t['difference_high']:+.3f}], {t['p_bootstrap']:.3f} / {t['p_randomisation']:.3f}")
        print(f"| {a} vs {b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
