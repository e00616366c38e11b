"""BLEU statistics, CIDEr-D and ROUGE-L of a whole corpus in one call to the compiled kernel.

Same numbers as ``bleu.bleu_stats``, ``cider.cider_d`` and ``rouge.rouge_l`` (the pure-Python
reference, used when the kernel is unavailable): lines are interned once, tokens become integer
ids, and the C code counts n-grams by id in the order the Python code iterates them.
"""

from __future__ import annotations

from itertools import chain

import numpy as np

from medmm.metrics.nlg import _native
from medmm.metrics.nlg.bleu import BleuStats

__all__ = ["ngram_scores"]


def _csr(lines: list[list[str]], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, token ids) of token lists, interning new tokens into ``vocab``."""
    off = np.zeros(len(lines) + 1, dtype=np.int32)
    np.cumsum([len(t) for t in lines], out=off[1:])
    get = vocab.setdefault
    ids = np.fromiter((get(w, len(vocab)) for w in chain.from_iterable(lines)), dtype=np.int32, count=int(off[-1]))
    return off, ids


def ngram_scores(hyps: list[str], refs: list[list[str]], bleu: bool = True, cider: bool = True,
                 rouge: bool = True, sigma: float = 6.0):
    """(BLEU statistics, CIDEr-D scores, ROUGE-L scores) per sample of tokenised, space-joined texts.

    An item is None when not asked for. Returns None when the compiled kernel is unavailable.
    """
    lib = _native.load()
    if lib is None:
        return None
    line_id: dict[str, int] = {}
    hyp_line = np.fromiter((line_id.setdefault(h, len(line_id)) for h in hyps), dtype=np.int32, count=len(hyps))
    ref_off = np.zeros(len(refs) + 1, dtype=np.int32)
    np.cumsum([len(r) for r in refs], out=ref_off[1:])
    ref_line = np.fromiter((line_id.setdefault(r, len(line_id)) for r in chain.from_iterable(refs)), dtype=np.int32,
                           count=int(ref_off[-1]))
    lines = list(line_id)
    vocab: dict[str, int] = {}
    split = [ln.split() for ln in lines]  # BLEU / CIDEr-D tokens (pycocoevalcap: str.split())
    off, toks = _csr(split, vocab)
    roff, rtoks = off, toks
    if rouge:
        rsplit = [ln.split(" ") for ln in lines]  # ROUGE-L tokens (pycocoevalcap: split(" "))
        if rsplit != split:
            roff, rtoks = _csr(rsplit, vocab)
    n = len(hyps)
    bleu_out = np.zeros((n, 10), dtype=np.int32) if bleu else None
    cider_out = np.zeros(n, dtype=np.float64) if cider else None
    rouge_out = np.zeros(n, dtype=np.float64) if rouge else None

    def ptr(a):
        return None if a is None else a.ctypes.data

    rc = lib.nlg_ngram(len(lines), ptr(off), ptr(toks), ptr(roff), ptr(rtoks), n, ptr(hyp_line), ptr(ref_off),
                       ptr(ref_line), float(sigma), ptr(bleu_out), ptr(cider_out), ptr(rouge_out))
    if rc != 0:
        raise MemoryError("NLG n-gram kernel: out of memory")
    stats = None
    if bleu:
        stats = [BleuStats(r[0], r[1], tuple(r[2:6]), tuple(r[6:10])) for r in bleu_out.tolist()]
    return stats, (cider_out.tolist() if cider else None), (rouge_out.tolist() if rouge else None)
