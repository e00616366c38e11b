"""Report-generation latency per image on this CPU: greedy, beam search, consensus; batch size 1.

    python benchmarks/report_latency.py RUN_DIR --data ../shared/data/medpix2 --split dev --n 40 [--threads 1]
        [--settings greedy,beam3,consensus,consensus+rp2+nir]

Loads a trained report_generation run (its own decoder, vocabulary, retrieval store), takes the
first N samples of the split and, for each decoding setting, times `collate` (image read +
preprocessing + retrieval) and generation (image encoder + decoder [+ consensus re-ranking]) one
sample at a time, after two warm-up samples. "greedy" / "beamK" switch consensus decoding off;
"consensus" uses the run's own consensus settings (mbr_* in its config, or 128 references, 8
candidates, 32 typical reports when the run has none); the records' baseline fields are not
computed while timing. A setting may end in "+rpP" (repetition_penalty P) and/or "+nir"
(no_immediate_repeat), e.g. "consensus+rp2+nir"; without them both are off. Prints a Markdown table (median / mean / p90 ms per image, words).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--settings", default="greedy,beam3,consensus", help="comma list of greedy | beamK | consensus, each optionally +rpP and/or +nir")
    ap.add_argument("--no-kv-cache", action="store_true", help="re-run the decoder over the whole prefix at every step (the pre-cache code path), to measure what the cache saves")
    args = ap.parse_args()
    if args.no_kv_cache:
        from medmm.models import decoders

        init = decoders._Stepper.__init__

        def no_cache(self, *a, **kw):
            init(self, *a, **kw)
            self.incremental = False

        decoders._Stepper.__init__ = no_cache

    from medmm.data import load_dataset
    from medmm.engine.api import load_run

    torch.set_num_threads(args.threads)
    cfg, task = load_run(args.run_dir)
    samples = list(load_dataset(cfg.data.dataset, args.data, args.split).samples)[: args.n + 2]
    base = dict(no_repeat_ngram_size=task.generation.no_repeat_ngram_size, max_length=task.generation.max_length)
    c = task.config
    mbr = (dict(mbr_references=c.mbr.references, mbr_candidates=c.mbr.candidates, mbr_typical=c.mbr.typical,
                mbr_retrieved=c.mbr.retrieved) if c.mbr.references else
           dict(mbr_references=128, mbr_candidates=8, mbr_typical=32, mbr_retrieved=0))
    beam0 = task.generation.beam_size
    task.with_consensus_baselines = False
    task.typical_indices()  # computed once per run (cached), not per image
    rows = []
    for name in args.settings.split(","):
        kind, *extra = name.split("+")
        rep = dict(repetition_penalty=1.0, no_immediate_repeat=False)
        for e in extra:
            if e == "nir":
                rep["no_immediate_repeat"] = True
            elif e.startswith("rp"):
                rep["repetition_penalty"] = float(e[2:])
            else:
                raise SystemExit(f"unknown setting suffix +{e} (use +rpP or +nir)")
        if kind == "consensus":
            task.set_decoding(beam_size=beam0, **base, **mbr, **rep)
        else:
            beam = 1 if kind == "greedy" else int(kind.removeprefix("beam"))
            task.set_decoding(beam_size=beam, mbr_references=0, **base, **rep)
        collate_ms, gen_ms, words = [], [], []
        task.inputs.clear_images()  # each setting reads and preprocesses its images afresh
        with torch.no_grad():
            for i, s in enumerate(samples):
                t0 = time.perf_counter()
                batch = task.collate([s])
                t1 = time.perf_counter()
                rec = task.evaluation_step(batch)[0]
                t2 = time.perf_counter()
                if i >= 2:  # warm-up: first calls allocate and fill caches
                    collate_ms.append(1000 * (t1 - t0))
                    gen_ms.append(1000 * (t2 - t1))
                    words.append(len(rec["prediction"].split()))
        rows.append((name, gen_ms, collate_ms, words))
    print(f"run {args.run_dir}; {len(rows[0][1])} images of {cfg.data.dataset}/{args.split}; batch size 1; "
          f"torch threads {args.threads}; KV cache {'off' if args.no_kv_cache else 'on'}; no_repeat_ngram_size {base['no_repeat_ngram_size']}, max_length {base['max_length']}\n")
    print("| decoding | generation ms/image: median | mean | p90 | collate ms/image (median) | words generated (mean) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, g, c, w in rows:
        print(f"| {name} | {statistics.median(g):.0f} | {statistics.mean(g):.0f} | {np.percentile(g, 90):.0f} | "
              f"{statistics.median(c):.1f} | {statistics.mean(w):.1f} |")


if __name__ == "__main__":
    main()
