"""Trivial report-generation baselines on the IU X-ray R2Gen test split, scored by `medmm score`.

    python benchmarks/report_baselines.py [--data ../shared/data] [--bootstrap 1000]

Two floors any real model must beat: every test study gets (a) the most frequent training
report, (b) the report of a random training study (seed 0). Writes JSONL + metrics JSON to
--out (default /tmp/medmm_report_baselines) and prints a markdown table. Recorded results:
benchmarks/report_baselines.md.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path

from medmm import plugins
from medmm.metrics.provenance import write_metrics
from medmm.metrics.score import score_files

plugins.load_scorers()  # the built-in file scorers, also where the entry-point metadata is stale

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared/data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/medmm_report_baselines"))
    args = ap.parse_args()
    ann = json.loads((args.data / "iu_xray_reports/r2gen_annotation/annotation.json").read_text())
    train = ann["train"]
    # this copy stores the test list under a 4-space key (see its SOURCE.txt)
    test = next(v for k, v in ann.items() if k.strip() in ("", "test"))
    args.out.mkdir(parents=True, exist_ok=True)
    ref = args.out / "ref.jsonl"
    ref.write_text("".join(json.dumps({"id": s["id"], "reference": s["report"]}) + "\n" for s in test))
    common = Counter(s["report"] for s in train).most_common(1)[0][0]
    rng = random.Random(0)
    systems = {"most frequent train report": lambda s: common,
               "random train report": lambda s: rng.choice(train)["report"]}
    print(f"R2Gen IU X-ray test split: {len(test)} reports; {args.bootstrap} bootstrap resamples\n")
    print("| baseline | BLEU-1 | BLEU-4 | ROUGE-L | CIDEr-D | METEOR | CE micro F1 (14) | CE macro F1 (14) | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, fn in systems.items():
        pred = args.out / (name.replace(" ", "_") + ".jsonl")
        pred.write_text("".join(json.dumps({"id": s["id"], "prediction": fn(s)}) + "\n" for s in test))
        start = time.perf_counter()
        m = score_files("report_generation", pred, ref, bootstrap=args.bootstrap, seed=0)
        secs = time.perf_counter() - start
        write_metrics(pred.with_suffix(".metrics.json"), m)
        ci = m.get("ci", {})

        def cell(key: str, value: float | None, ci: dict = ci) -> str:
            if value is None:
                return "-"
            c = ci.get(key)
            return f"{value:.3f}" + (f" [{c['low']:.3f}, {c['high']:.3f}]" if c and c["low"] is not None else "")

        nlg, ce = m["nlg"], m["clinical_efficacy"]
        print(f"| {name} | {cell('nlg.bleu_1', nlg.get('bleu_1'))} | {cell('nlg.bleu_4', nlg.get('bleu_4'))} | "
              f"{cell('nlg.rouge_l', nlg.get('rouge_l'))} | {cell('nlg.cider_d', nlg.get('cider_d'))} | "
              f"{cell('nlg.meteor', nlg.get('meteor'))} | "
              f"{cell('clinical_efficacy.micro.f1', ce['micro']['f1'])} | {cell('clinical_efficacy.macro.f1', ce['macro']['f1'])} | "
              f"{secs:.0f} |")


if __name__ == "__main__":
    main()
