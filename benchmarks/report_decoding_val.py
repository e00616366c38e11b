"""Choose repeat-control decoding settings on VAL (never dev) for a trained report run.

    python benchmarks/report_decoding_val.py RUN_DIR --out runs/stutter/val_RUN.json \
        --settings 1:0 1:1 1.2:0 1.5:0 2:0 1.2:1

Loads a report_generation run, rebuilds its train/val split (the run's data config and seed) and
decodes every val image once per setting "REPETITION_PENALTY:NO_IMMEDIATE_REPEAT" (0/1), with the
run's own decoding otherwise (beam, no_repeat_ngram_size, consensus re-ranking as configured:
`task.set_decoding` + `task.evaluation_step`, i.e. what `medmm predict` does). For each setting it
writes val CIDEr-D / ROUGE-L / BLEU-1 / BLEU-4 (`report_scoring.report_scores`, no bootstrap) of
the output and of the top beam hypothesis, the number of stuttering outputs
(`report_copy_stats.stutters`: a word directly followed by itself), the outputs holding any word
twice (anywhere: what a repetition penalty also discourages), their mean length, the verbatim training
captions, the distinct outputs and the decoding seconds (CPU load shifts these; compare within
one invocation). The nearest-neighbour baseline of the same records is printed once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_copy_stats import copy_stats, stutters


def parse_setting(text: str) -> tuple[float, bool]:
    penalty, _, nir = text.partition(":")
    return float(penalty), nir.strip() in ("1", "true", "yes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--settings", nargs="+", default=["1:0", "1:1", "1.2:0", "1.5:0", "2:0", "1.2:1"],
                    help="REPETITION_PENALTY:NO_IMMEDIATE_REPEAT (0/1) pairs; 1:0 = the run's decoding unchanged")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--split", default="val", choices=["val"], help="val only: settings are never chosen on dev")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from medmm.engine.api import load_run
    from medmm.engine.data import load_splits
    from medmm.models.decoders import word_tokenize
    from medmm.tasks.report.mbr import consensus_words
    from medmm.tasks.report.scoring import report_scores

    cfg, task = load_run(args.run_dir)
    task.eval()
    splits = load_splits(cfg.data, cfg.seed)
    val = [s for s in splits["val"].samples if task._text(s) and s.images]
    training = {" ".join(consensus_words(t)) for t in task.store_texts}
    task.with_consensus_baselines = False  # the consensus baselines do not depend on these options
    task.typical_indices()
    results, nn = [], None
    for setting in args.settings:
        penalty, nir = parse_setting(setting)
        gen = task.set_decoding(repetition_penalty=penalty, no_immediate_repeat=nir)
        t0 = time.time()
        recs = []
        with torch.no_grad():
            for k in range(0, len(val), args.batch):
                recs += task.evaluation_step(task.collate(val[k : k + args.batch]))
        seconds = time.time() - t0
        if nn is None:
            s = report_scores(recs, "nn_prediction", 0)
            nn = {"cider_d": round(s["cider_d"], 4), "n_stutter": sum(stutters(r["nn_prediction"]) for r in recs)}
            print("val nearest neighbour", json.dumps(nn), flush=True)
        sc = report_scores(recs, "prediction", 0)
        beam_field = "beam_prediction" if all("beam_prediction" in r for r in recs) else "prediction"
        beam = report_scores(recs, beam_field, 0)
        stats = copy_stats([r["prediction"] for r in recs], training)
        words = [word_tokenize(r["prediction"]) for r in recs]
        row = {"repetition_penalty": gen.repetition_penalty, "no_immediate_repeat": gen.no_immediate_repeat,
               "cider_d": round(sc["cider_d"], 4), "rouge_l": round(sc["rouge_l"], 4), "bleu_1": round(sc["bleu_1"], 4),
               "bleu_4": round(sc["bleu_4"], 4), "n_stutter": stats["n_stutter"],
               "beam_top_cider_d": round(beam["cider_d"], 4),
               "beam_top_n_stutter": sum(stutters(r[beam_field]) for r in recs),
               "n_any_repeated_word": sum(len(set(w)) < len(w) for w in words),
               "mean_words": round(sum(map(len, words)) / max(len(words), 1), 1),
               "n_copies": stats["n_copies"], "distinct": stats["distinct"],
               "most_repeated_count": stats["most_repeated_count"], "decode_seconds": round(seconds, 1)}
        results.append(row)
        print(json.dumps(row), flush=True)
    out = {"run": args.run_dir, "split": "val", "n": len(val), "nearest_neighbour": nn,
           "decoding": {**{k: getattr(task.config.decoding, k) for k in ("beam_size", "no_repeat_ngram_size", "max_length")},
                        **{f"mbr_{k}": getattr(task.config.mbr, k) for k in ("references", "candidates", "typical")}},
           "settings": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
