"""BLEU-1..4 exactly as pycocoevalcap's ``Bleu(4)`` computes it (``option='closest'``).

Per caption: clipped n-gram matches against the per-n-gram maximum count over references, the
reference length closest to the hypothesis length (ties -> the shorter one). Corpus BLEU sums the
counts over captions before taking the geometric mean; both use pycocoevalcap's smoothing constants
(``tiny=1e-15`` on matches, ``small=1e-9`` on guesses) and brevity penalty ``exp(1 - r/c)`` when c < r.
Per-caption scores are pycocoevalcap's ``bleu_list`` (its sentence-level BLEU with the same smoothing).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

__all__ = ["BleuStats", "bleu_stats", "bleu_from_stats"]

_TINY = 1e-15
_SMALL = 1e-9


@dataclass(frozen=True)
class BleuStats:
    """Sufficient statistics of one caption: lengths, n-gram guesses and clipped matches."""

    testlen: int
    reflen: int
    guess: tuple[int, ...]
    correct: tuple[int, ...]


def ngram_counts(words: list[str], n: int) -> Counter:
    """Counts of all 1..n-grams (as tuples) of a token list."""
    counts: Counter = Counter()
    for k in range(1, n + 1):
        counts.update(zip(*(words[i:] for i in range(k)), strict=False))
    return counts


def bleu_stats(hyp: list[str], refs: list[list[str]], n: int = 4) -> BleuStats:
    """BLEU statistics of one tokenised hypothesis against its tokenised references."""
    maxcounts: dict = {}
    for ref in refs:
        for g, c in ngram_counts(ref, n).items():
            if c > maxcounts.get(g, 0):
                maxcounts[g] = c
    testlen = len(hyp)
    # min over (|l - c|, l): closest length, ties to the shorter reference (as pycocoevalcap).
    reflen = min((abs(len(r) - testlen), len(r)) for r in refs)[1]
    correct = [0] * n
    for g, c in ngram_counts(hyp, n).items():
        m = maxcounts.get(g)
        if m:
            correct[len(g) - 1] += min(m, c)
    guess = tuple(max(0, testlen - k + 1) for k in range(1, n + 1))
    return BleuStats(testlen, reflen, guess, tuple(correct))


def _bleu(testlen: float, reflen: float, guess, correct) -> list[float]:
    out, prod = [], 1.0
    for k in range(len(guess)):
        prod *= (float(correct[k]) + _TINY) / (float(guess[k]) + _SMALL)
        out.append(prod ** (1.0 / (k + 1)))
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    if ratio < 1:
        bp = math.exp(1 - 1 / ratio)
        out = [b * bp for b in out]
    return out


def bleu_from_stats(stats: list[BleuStats]) -> tuple[list[float], list[list[float]]]:
    """(corpus BLEU-1..n, per-caption BLEU-1..n) from per-caption statistics."""
    if not stats:
        raise ValueError("BLEU needs at least one caption")
    n = len(stats[0].guess)
    per = [_bleu(s.testlen, s.reflen, s.guess, s.correct) for s in stats]
    guess = [sum(s.guess[k] for s in stats) for k in range(n)]
    correct = [sum(s.correct[k] for s in stats) for k in range(n)]
    corpus = _bleu(sum(s.testlen for s in stats), sum(s.reflen for s in stats), guess, correct)
    return corpus, per
