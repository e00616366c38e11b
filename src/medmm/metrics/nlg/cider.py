"""CIDEr-D exactly as pycocoevalcap's ``Cider`` (its CIDEr is the CIDEr-D variant).

TF-IDF vectors of 1..4-grams with document frequency counted over the *references* of the corpus
(one count per caption set), IDF ``log(N) - log(max(1, df))``; per n the cosine-like similarity uses
the clipped product ``min(h, r) * r``, a Gaussian length penalty ``exp(-(lh - lr)^2 / (2 sigma^2))``
with sigma=6, averaged over n and references and scaled by 10. Quirk kept for parity: the "length"
pycocoevalcap feeds the penalty is the number of *bigrams*, not words.
"""

from __future__ import annotations

import math
from collections import Counter

from medmm.metrics.nlg.bleu import ngram_counts

__all__ = ["cider_d", "tfidf_vectors", "ngram_similarities"]


def tfidf_vectors(counts: Counter, idf: dict, default_idf: float, n: int):
    """(TF-IDF dict per n, their L2 norms, bigram count) of one text's n-gram counts; an n-gram
    missing from ``idf`` gets ``default_idf``. The bigram count is pycocoevalcap's "length"."""
    vec: list[dict] = [{} for _ in range(n)]
    norm = [0.0] * n
    length = 0
    for g, tf in counts.items():
        k = len(g) - 1
        w = float(tf) * idf.get(g, default_idf)
        vec[k][g] = w
        norm[k] += w * w
        if k == 1:
            length += tf
    return vec, [math.sqrt(x) for x in norm], length


def ngram_similarities(a: list[dict], a_norm: list[float], b: list[dict], b_norm: list[float]) -> list[float]:
    """Per n: sum of the clipped products ``min(a, b) * b`` over shared n-grams, divided by the
    norms (left undivided when either norm is 0), as pycocoevalcap's ``simDistance``."""
    out = []
    for k in range(len(a)):
        rk = b[k]
        val = 0.0
        for g, w in a[k].items():
            r = rk.get(g, 0.0)
            if r:
                val += min(w, r) * r
        if a_norm[k] != 0 and b_norm[k] != 0:
            val /= a_norm[k] * b_norm[k]
        out.append(val)
    return out


def cider_d(hyps: list[list[str]], refs: list[list[list[str]]], n: int = 4, sigma: float = 6.0) -> list[float]:
    """Per-caption CIDEr-D (x10) of tokenised hypotheses; the corpus score is their mean."""
    hyp_counts = [ngram_counts(h, n) for h in hyps]
    ref_counts = [[ngram_counts(r, n) for r in rs] for rs in refs]
    df: Counter = Counter()
    for rcs in ref_counts:
        df.update(set().union(*rcs))
    log_n = math.log(float(len(hyps)))
    # IDF once per n-gram (an n-gram no reference has gets df 0 -> log(max(1, 0)) = 0).
    idf = {g: log_n - math.log(max(1.0, float(c))) for g, c in df.items()}
    two_s2 = 2 * sigma**2
    scores = []
    for hc, rcs in zip(hyp_counts, ref_counts, strict=False):
        vh, nh, lh = tfidf_vectors(hc, idf, log_n, n)
        total = [0.0] * n
        for rc in rcs:
            vr, nr, lr = tfidf_vectors(rc, idf, log_n, n)
            pen = math.e ** (-(float(lh - lr) ** 2) / two_s2)
            for k, val in enumerate(ngram_similarities(vh, nh, vr, nr)):
                total[k] += val * pen
        scores.append(sum(total) / n / len(rcs) * 10.0)
    return scores
