"""Time medmm's BLEU-1..4 + METEOR + ROUGE-L + CIDEr-D against pycocoevalcap's on the same pairs.

    python benchmarks/nlg_speed.py [--pairs 5000] [--skip-coco]

Pairs: findings of IU X-ray study i (R2Gen annotation, 2,955 studies, sorted by id) against the
findings of study i+7 (and i+13 for the next 2,955), so every pair is two real, different reports.
Both toolkits get raw text and tokenise it themselves (pycocoevalcap: Stanford PTBTokenizer in Java;
medmm: its Python re-implementation). Prints wall times and the largest score difference.
The first medmm call in a process includes reading METEOR's resources (timed separately) and every
in-process cache starting cold. Two one-time costs per machine are excluded and printed: building
the paraphrase index cache (~40 s) and compiling medmm's C kernels (~1 s). medmm runs in one
process and one thread (``--threads`` for torch/BLAS is irrelevant here: no parallel code runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DATA = Path(os.environ.get("MEDMM_SHARED_DATA", REPO.parent / "shared" / "data"))


def make_pairs(n: int) -> tuple[dict, dict]:
    """n deterministic (hypothesis, [reference]) report pairs from IU X-ray."""
    ann = json.loads((DATA / "iu_xray_reports" / "r2gen_annotation" / "annotation.json").read_text())
    reports = [it["report"] for it in sorted((it for v in ann.values() for it in v), key=lambda x: x["id"])]
    hyps, refs = {}, {}
    k = 0
    for offset in (7, 13, 29, 31):
        for i in range(len(reports)):
            if k == n:
                return hyps, refs
            hyps[k] = reports[i]
            refs[k] = [reports[(i + offset) % len(reports)]]
            k += 1
    return hyps, refs


def run_medmm(hyps: dict, refs: dict) -> dict:
    from medmm.metrics.nlg import score_corpus

    return score_corpus(hyps, refs)


def run_coco(hyps: dict, refs: dict) -> dict:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": hyps[k]}] for k in hyps})
    out = {}
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"bleu_{i + 1}": b[i] for i in range(4)})
    m = Meteor()
    out["meteor"], _ = m.compute_score(gts, res)
    del m
    out["rouge_l"], _ = Rouge().compute_score(gts, res)
    out["cider_d"], _ = Cider().compute_score(gts, res)
    return out


def _cpu() -> float:
    """CPU seconds used so far by this process and its finished children (pycocoevalcap's Java)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _one_time_setup() -> None:
    """Build what medmm builds once per machine (paraphrase index, C kernels) in a child process,
    so the timed process starts with every in-process cache cold."""
    import subprocess

    code = ("import time; from medmm.metrics.nlg import _native; from medmm.metrics.nlg.meteor_data import "
            "resource_paths, ParaphraseTable; lib = _native.library_path(); had = lib.is_file(); "
            "t = time.perf_counter(); ok = _native.load() is not None; dt = time.perf_counter() - t; "
            "print(f'medmm  C kernels: {\"cached\" if had else f\"compiled in {dt:.2f} s\"}' if ok else "
            "'medmm  C kernels UNAVAILABLE: pure-Python path'); t = time.perf_counter(); "
            "ParaphraseTable.load(resource_paths()[1]); print(f'medmm  paraphrase index ready ({time.perf_counter() - t:.2f} s)')")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--skip-coco", action="store_true")
    args = ap.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    _one_time_setup()
    hyps, refs = make_pairs(args.pairs)
    from medmm.metrics.nlg.meteor_data import load_resources

    c = _cpu()
    t = time.perf_counter()
    load_resources()
    t_res = time.perf_counter() - t
    t = time.perf_counter()
    ours = run_medmm(hyps, refs)
    t_first = time.perf_counter() - t
    c_medmm = _cpu() - c
    from medmm.metrics.nlg.tokenize import coco_tokenize, ptb_tokenize

    ptb_tokenize.cache_clear()  # time the second call without the tokenisation caches as well
    coco_tokenize.cache_clear()
    t = time.perf_counter()
    run_medmm(hyps, refs)
    t_second = time.perf_counter() - t
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"pairs: {len(hyps)} IU X-ray report pairs")
    print(f"medmm  METEOR resources load (jar + cached paraphrase index): {t_res:6.2f} s")
    print(f"medmm  all metrics, first call (cold caches, resources loaded): {t_first:6.2f} s")
    print(f"medmm  all metrics, second call:                             {t_second:6.2f} s")
    if not args.skip_coco:
        c = _cpu()
        t = time.perf_counter()
        theirs = run_coco(hyps, refs)
        t_coco = time.perf_counter() - t
        c_coco = _cpu() - c
        print(f"pycocoevalcap all metrics (Java tokenizer + METEOR):          {t_coco:6.2f} s")
        # CPU seconds (this process + the Java children) vary less with machine load than wall time.
        print(f"CPU seconds: medmm resources + first call {c_medmm:.2f}, pycocoevalcap {c_coco:.2f} "
              f"(ratio {c_coco / c_medmm:.1f}x)")
        print(f"speed-up (pycocoevalcap / medmm first call incl. resource load): {t_coco / (t_res + t_first):.1f}x")
        print(f"speed-up (pycocoevalcap / medmm second call):                    {t_coco / t_second:.1f}x")
        for k in ours:
            print(f"  {k:8s} medmm {ours[k]:.6f}  pycocoevalcap {theirs[k]:.6f}  |diff| {abs(ours[k] - theirs[k]):.2e}")
    else:
        for k, v in ours.items():
            print(f"  {k:8s} {v:.6f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
