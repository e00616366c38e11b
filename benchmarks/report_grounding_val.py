"""Choose grounded consensus-decoding settings on VAL (never dev): one run, many re-rankings.

    python benchmarks/report_grounding_val.py RUN_DIR --out runs/grounding_val_RUN.json [--samples 16]

Loads a report_generation run, rebuilds its train/val split (the run's data config and seed),
decodes every val image ONCE (8-best beam + `--samples` sampled texts, attribute probabilities,
retrieval hits), then re-ranks the same candidates under each setting of the grid:
typical candidates (mbr_typical), sampled candidates used, attribute-weighted pseudo-references
(mbr_reference_power) and attribute-consistency weight (mbr_attribute_weight). For each setting it
writes val CIDEr-D / ROUGE-L / BLEU-4 (`report_scoring.report_scores`, no bootstrap), the share of
outputs that are verbatim training captions and the number of distinct outputs. Runs trained
before grounding existed get their attribute lexicon fitted here (`task.fit_grounding`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--samples", type=int, default=16, help="sampled candidates decoded per image (max of the grid)")
    ap.add_argument("--references", type=int, nargs="+", default=[128])
    ap.add_argument("--typical", type=int, nargs="+", default=[0, 32])
    ap.add_argument("--powers", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.3, 1.0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--split", default="val", choices=["val"], help="val only: settings are never chosen on dev")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from medmm.engine.api import load_run
    from medmm.engine.data import load_splits
    from medmm.models.decoders import join_tokens
    from medmm.tasks.report.scoring import report_scores

    t0 = time.time()
    cfg, task = load_run(args.run_dir)
    task.eval()
    splits = load_splits(cfg.data, cfg.seed)
    train = [s for s in splits["train"].samples if task._text(s) and s.images]
    if not task.store_labels:
        task.fit_grounding(train)
    val = [s for s in splits["val"].samples if task._text(s) and s.images]
    train_texts = set(task.store_texts)
    c = task.config
    c.mbr_references = max(args.references)
    c.mbr_candidates, c.mbr_samples = 8, args.samples
    cands, probs, hits, groups, refs, ids = [], [], [], [], [], []
    with torch.no_grad():
        for k in range(0, len(val), 32):
            batch = task.collate(val[k : k + 32])
            cid, _ = task.generate_candidates(batch)
            ap_ = [torch.softmax(lg.float(), -1) for lg in task.last_attribute_logits]
            for i, cc in enumerate(cid):
                cands.append([join_tokens(task.tokenizer.decode_tokens(g)) for g in cc])
                probs.append({t: p[i].numpy() for t, p in zip(task.attributes, ap_, strict=True)})
            hits += batch["hits"]
            groups += batch["groups"]
            refs += batch["references"]
            ids += batch["ids"]
    decode_s = time.time() - t0
    cc = task.consensus
    plain_sim, memo = cc._sim, {}

    def memo_sim(a, b):  # the same (candidate, reference) pair recurs in every setting of the grid
        key = (id(a), id(b))
        if key not in memo:
            memo[key] = plain_sim(a, b)
        return memo[key]

    cc.cache_size = 10**9  # vectors must stay alive: the memo is keyed by their identity
    cc._sim = memo_sim
    results = []
    grid = itertools.product(args.references, args.typical, sorted({0, args.samples}), args.powers, args.weights)
    for n_ref, typ, n_samp, power, weight in grid:
        if n_samp > args.samples:
            continue
        c.mbr_references, c.mbr_typical, c.mbr_reference_power, c.mbr_attribute_weight = n_ref, typ, power, weight
        recs = []
        for i in range(len(val)):
            gen = cands[i][:8] + cands[i][8 : 8 + n_samp]
            pick = task._consensus_pick(gen, hits[i], groups[i], probs[i])
            recs.append({"id": ids[i], "reference": refs[i], "group": groups[i], "prediction": pick["text"],
                         "beam": cands[i][0]})
        sc = report_scores(recs, "prediction", 0)
        preds = [r["prediction"] for r in recs]
        row = {"mbr_references": n_ref, "mbr_typical": typ, "mbr_samples": n_samp, "mbr_reference_power": power,
               "mbr_attribute_weight": weight, "cider_d": round(sc["cider_d"], 4), "rouge_l": round(sc["rouge_l"], 4),
               "bleu_4": round(sc["bleu_4"], 4), "copy_share": round(sum(p in train_texts for p in preds) / len(preds), 3),
               "distinct": len(set(preds))}
        results.append(row)
        print(json.dumps(row), flush=True)
    beam = report_scores([{**r, "prediction": r["beam"]} for r in recs], "prediction", 0)
    out = {"run": args.run_dir, "split": "val", "n": len(val), "decode_seconds": round(decode_s, 1),
           "beam_top_cider_d": round(beam["cider_d"], 4), "settings": results}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print("beam top", out["beam_top_cider_d"], "decode s", out["decode_seconds"])


if __name__ == "__main__":
    main()
