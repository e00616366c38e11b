"""METEOR 1.5 statistics of a whole corpus in one call to the compiled kernel.

Python prepares integer tables once per corpus -- word ids of every distinct normalised line, and
per distinct word its Snowball stem, function-word flag and WordNet synsets, plus the paraphrase
pairs the corpus can use -- and the C code (``_native.c``) runs METEOR's matchers, beam search
and statistics for every (hypothesis, reference) pair. Results equal ``MeteorScorer.stats``.
"""

from __future__ import annotations

from itertools import chain

import numpy as np

from medmm.metrics.nlg import _native
from medmm.metrics.nlg.meteor_data import MeteorResources

__all__ = ["pair_stats"]

_STEMS: dict[str, str] = {}


def _stem_all(words: list[str]) -> list[str]:
    """Snowball English stems (cached across calls: a corpus vocabulary changes little)."""
    missing = [w for w in words if w not in _STEMS]
    if len(_STEMS) + len(missing) > 1_000_000:  # bound the cache for long-running processes
        _STEMS.clear()
        missing = list(dict.fromkeys(words))
    if missing:
        import snowballstemmer

        _STEMS.update(zip(missing, snowballstemmer.stemmer("english").stemWords(missing), strict=True))
    return [_STEMS[w] for w in words]


def pair_stats(hyps: list[tuple[str, ...]], refs: list[list[tuple[str, ...]]], res: MeteorResources,
               beam: int = 40) -> list[list[tuple]] | None:
    """Per sample, the statistics of the hypothesis against each of its references (normalised tokens).

    Same tuples as ``MeteorScorer.stats``; None when the compiled kernel is unavailable.
    """
    lib = _native.load()
    if lib is None:
        return None
    line_id: dict[tuple[str, ...], int] = {}
    hyp_line = [line_id.setdefault(h, len(line_id)) for h in hyps]
    ref_line = [[line_id.setdefault(r, len(line_id)) for r in rs] for rs in refs]
    lines = list(line_id)
    vocab: dict[str, int] = {}
    get = vocab.setdefault
    off = np.zeros(len(lines) + 1, dtype=np.int32)
    np.cumsum([len(t) for t in lines], out=off[1:])
    toks = np.fromiter((get(w, len(vocab)) for w in chain.from_iterable(lines)), dtype=np.int32, count=int(off[-1]))
    words = list(vocab)

    stem_id: dict[str, int] = {}
    stems = np.fromiter((stem_id.setdefault(s, len(stem_id)) for s in _stem_all(words)), dtype=np.int32,
                        count=len(words))
    fw_set = res.function_words
    fw = np.fromiter((w.lower() in fw_set for w in words), dtype=np.uint8, count=len(words))
    syn_id: dict[int, int] = {}
    all_synsets = res.synonyms.all_synsets
    syn_lists = [[syn_id.setdefault(s, len(syn_id)) for s in all_synsets(w)] for w in words]
    syn_off = np.zeros(len(words) + 1, dtype=np.int32)
    np.cumsum([len(s) for s in syn_lists], out=syn_off[1:])
    syn = np.fromiter(chain.from_iterable(syn_lists), dtype=np.int32, count=int(syn_off[-1]))

    # Paraphrase pairs whose words all occur in the corpus, table ids -> corpus word ids.
    table = res.paraphrases
    _, la, lb, ta, tb = table.subset_arrays(words)
    to_corpus = np.full(len(table.words), -1, dtype=np.int32)
    for w, i in vocab.items():
        t = table.vocab.get(w)
        if t is not None:
            to_corpus[t] = i
    pr_off = np.zeros(len(la) + 1, dtype=np.int32)
    np.cumsum(la, out=pr_off[1:])
    pp_off = np.zeros(len(lb) + 1, dtype=np.int32)
    np.cumsum(lb, out=pp_off[1:])
    pr_toks = np.ascontiguousarray(to_corpus[ta])
    pp_toks = np.ascontiguousarray(to_corpus[tb])

    c_hyp = np.fromiter((h for h, rs in zip(hyp_line, ref_line, strict=False) for _ in rs), dtype=np.int32)
    c_ref = np.fromiter(chain.from_iterable(ref_line), dtype=np.int32)
    out = np.zeros((len(c_hyp), 21), dtype=np.int32)

    def ptr(a: np.ndarray) -> int:
        return a.ctypes.data

    rc = lib.meteor_corpus(len(words), ptr(stems), ptr(fw), ptr(syn_off), ptr(syn), len(stem_id), len(syn_id),
                           len(lines), ptr(off), ptr(toks), len(la), ptr(pr_off), ptr(pr_toks), ptr(pp_off),
                           ptr(pp_toks), len(c_hyp), ptr(c_hyp), ptr(c_ref), beam, ptr(out))
    if rc != 0:
        raise MemoryError("METEOR kernel: out of memory")
    flat = [(r[0], r[1], r[2], r[3], tuple(r[4:8]), tuple(r[8:12]), tuple(r[12:16]), tuple(r[16:20]), r[20])
            for r in out.tolist()]
    per, k = [], 0
    for rs in ref_line:
        per.append(flat[k:k + len(rs)])
        k += len(rs)
    return per
