"""Consensus (minimum-Bayes-risk) re-ranking of generated reports with CIDEr-D.

Devlin et al. 2015 ("Exploring nearest neighbor approaches for image captioning") pick, among
candidate captions, the one that agrees most with the captions of the query's nearest training
images. Here the candidates are the decoder's N-best beam hypotheses (optionally plus the k
nearest training reports) and the "pseudo-references" are the reports of the K nearest training
studies: the chosen text maximises the estimated expected CIDEr-D, i.e. the mean CIDEr-D against
the pseudo-references (minimum Bayes risk under the retrieval's neighbour distribution).

`CiderConsensus` computes CIDEr-D with the formula of `medmm.metrics.nlg.cider` (TF-IDF of 1..4
grams, clipped products, Gaussian length penalty on the bigram count, x10), but with document
frequencies fitted once on the TRAINING reports (the test references are never seen). Texts are
lower-cased and reduced to alphanumeric words (punctuation dropped, as PTB tokenisation does
before scoring).

    cc = CiderConsensus(train_texts)
    best, utilities = cc.select(["axial ct shows a mass", "normal study"], neighbour_texts)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from medmm.errors import MedmmError
from medmm.metrics.nlg.bleu import ngram_counts
from medmm.metrics.nlg.cider import ngram_similarities, tfidf_vectors

if TYPE_CHECKING:
    from medmm.knowledge.report_store import ReportStore

_WORD = re.compile(r"[a-z0-9]+")
_Vec = tuple[list[dict[tuple[str, ...], float]], list[float], int]


def consensus_words(text: str) -> list[str]:
    """Lower-cased alphanumeric words of `text` (the unit CIDEr-D counts here)."""
    return _WORD.findall(text.lower())


class CiderConsensus:
    """CIDEr-D between pairs of texts with a fixed IDF table (see the module docstring).

    Args:
        corpus: the texts whose n-gram document frequencies define the IDF (training reports;
            each text counts once per n-gram, as pycocoevalcap counts one reference set).
        n: largest n-gram. sigma: width of the Gaussian length penalty (pycocoevalcap: 6).
        cache_size: vectors of this many distinct texts are kept (training reports recur).
    """

    def __init__(self, corpus: Sequence[str], n: int = 4, sigma: float = 6.0, cache_size: int = 50_000):
        texts = [t for t in corpus if t and t.strip()]
        if not texts:
            raise MedmmError("CiderConsensus needs at least one non-empty corpus text")
        self.n, self.sigma, self.cache_size = n, sigma, cache_size
        df: Counter = Counter()
        for t in texts:
            df.update(set(ngram_counts(consensus_words(t), n)))
        self.log_n = math.log(float(len(texts)))
        self.idf = {g: self.log_n - math.log(float(c)) for g, c in df.items()}
        self._cache: dict[str, _Vec] = {}

    def vector(self, text: str) -> _Vec:
        """(TF-IDF per n, their norms, bigram count) of `text` (cached)."""
        v = self._cache.get(text)
        if v is not None:
            return v
        # An n-gram no training report has: df 1 -> idf log N (the default below).
        v = tfidf_vectors(ngram_counts(consensus_words(text), self.n), self.idf, self.log_n, self.n)
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[text] = v
        return v

    def similarity(self, hypothesis: str, reference: str) -> float:
        """CIDEr-D (x10) of `hypothesis` against the one `reference`."""
        return self._sim(self.vector(hypothesis), self.vector(reference))

    def _sim(self, a: _Vec, b: _Vec) -> float:
        va, na, la = a
        vb, nb, lb = b
        pen = math.exp(-float(la - lb) ** 2 / (2 * self.sigma**2))
        total = 0.0
        for val in ngram_similarities(va, na, vb, nb):
            total += val * pen
        return total / self.n * 10.0

    def utilities(self, candidates: Sequence[str], references: Sequence[str],
                  weights: Sequence[float] | None = None, candidate_groups: Sequence[str | None] | None = None,
                  reference_groups: Sequence[str | None] | None = None) -> list[float]:
        """Expected CIDEr-D of each candidate: the (weighted) mean over `references`.

        A reference never votes for a candidate it could be a copy of: one whose words equal the
        candidate's, or (with groups given) one from the candidate's own group, e.g. another image
        of the training case a retrieved candidate came from (such images often share most of a
        caption, which would make any retrieved report look like the consensus).
        """
        if weights is not None and len(weights) != len(references):
            raise MedmmError(f"{len(references)} references but {len(weights)} weights")
        if candidate_groups is not None and len(candidate_groups) != len(candidates):
            raise MedmmError(f"{len(candidates)} candidates but {len(candidate_groups)} candidate groups")
        if reference_groups is not None and len(reference_groups) != len(references):
            raise MedmmError(f"{len(references)} references but {len(reference_groups)} reference groups")
        w = list(weights) if weights is not None else [1.0] * len(references)
        rg = list(reference_groups) if reference_groups is not None else [None] * len(references)
        cg = list(candidate_groups) if candidate_groups is not None else [None] * len(candidates)
        refs = [(self.vector(r), " ".join(consensus_words(r)), wi, gi) for r, wi, gi in zip(references, w, rg, strict=True)]
        out = []
        for c, group in zip(candidates, cg, strict=True):
            cv, key = self.vector(c), " ".join(consensus_words(c))
            num = den = 0.0
            for rv, rkey, wi, gi in refs:
                if rkey == key or (group is not None and gi == group):
                    continue
                num += wi * self._sim(cv, rv)
                den += wi
            out.append(num / den if den > 0 else 0.0)
        return out

    def select(self, candidates: Sequence[str], references: Sequence[str],
               weights: Sequence[float] | None = None, candidate_groups: Sequence[str | None] | None = None,
               reference_groups: Sequence[str | None] | None = None) -> tuple[int, list[float]]:
        """Index of the candidate with the highest expected CIDEr-D (first on ties) and all
        candidates' utilities (arguments as in `utilities`)."""
        if not candidates:
            raise MedmmError("consensus re-ranking needs at least one candidate")
        u = self.utilities(candidates, references, weights, candidate_groups, reference_groups)
        return max(range(len(u)), key=lambda i: (u[i], -i)), u


def typical_reports(consensus: CiderConsensus, texts: Sequence[str], groups: Sequence[str], m: int,
                    n_references: int = 400, seed: int = 0) -> list[int]:
    """Indices of the `m` most typical reports: distinct texts ranked by their mean CIDEr-D
    against `n_references` reports drawn (seeded) from the whole list, each text's own group
    left out. These are the prior's consensus, the candidates that fit "any" study of a kind."""
    import random

    if m <= 0 or not texts:
        return []
    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        if t.strip():
            first.setdefault(" ".join(consensus_words(t)), i)
    cand = sorted(first.values())
    pool = list(range(len(texts)))
    refs = pool if len(pool) <= n_references else sorted(random.Random(seed).sample(pool, n_references))
    util = consensus.utilities([texts[i] for i in cand], [texts[j] for j in refs],
                               candidate_groups=[groups[i] for i in cand], reference_groups=[groups[j] for j in refs])
    order = sorted(range(len(cand)), key=lambda k: (-util[k], cand[k]))
    return [cand[k] for k in order[:m]]


def group_weights(groups: Sequence[str | None]) -> list[float]:
    """1 / (number of items of the same group): each group (e.g. a training case whose several
    images were all retrieved) weighs as much as a group retrieved once."""
    counts: dict[str | None, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    return [1.0 / counts[g] if g is not None else 1.0 for g in groups]


class TrainingReports:
    """The training reports consensus decoding draws on: the retrieval store (hits -> texts),
    their ids, texts and groups (e.g. cases), and the CIDEr-D consensus fitted on them. Group
    lookups and the typical reports are computed once; build a new object when the store changes."""

    def __init__(self, store: ReportStore, ids: Sequence[str], texts: Sequence[str], groups: Sequence[str],
                 consensus: CiderConsensus):
        self.store, self.ids, self.texts, self.groups, self.consensus = store, list(ids), list(texts), list(groups), consensus
        self._group_by_id = dict(zip(self.ids, self.groups, strict=False))
        self._position = {h: i for i, h in enumerate(self.ids)}
        self._typical: list[int] = []

    def group_of(self, report_id: str) -> str:
        """The group (e.g. case) of a training report."""
        return self._group_by_id[report_id]

    def position(self, report_id: str) -> int:
        """Index of a training report in `ids` / `texts`."""
        return self._position[report_id]

    def typical_indices(self, m: int) -> list[int]:
        """Positions of the `m` most typical training reports (`typical_reports`; at least 64
        computed on first use, so asking again for as many costs nothing)."""
        if m <= 0:
            return []
        if len(self._typical) < m:
            self._typical = typical_reports(self.consensus, self.texts, self.groups, max(m, 64))
        return self._typical[:m]

    def pseudo_references(self, hits: Sequence[tuple[str, float]], k: int) -> tuple[list[str], list[str], list[float]]:
        """Texts, groups and weights of the `k` nearest training reports; each training group
        (case) weighs 1 in total however many of its images were retrieved."""
        ids = [h for h, _ in hits[:k]]
        groups = [self.group_of(h) for h in ids]
        return [self.store.text_of(h) for h in ids], groups, group_weights(groups)

    def pick(self, generated: Sequence[str], hits: Sequence[tuple[str, float]], exclude_group: str | None, *,
             n_references: int, n_retrieved: int = 0, n_typical: int = 0,
             reference_factors: Callable[[list[str]], list[float]] | None = None,
             candidate_bonus: Callable[[str], float] | None = None) -> dict[str, Any]:
        """Consensus decoding of one study: among the generated texts, the `n_retrieved` nearest
        and the `n_typical` most typical training reports (never one of `exclude_group`, the
        study's own group), the candidate with the highest mean CIDEr-D against the
        `n_references` nearest training reports.

        reference_factors(reference ids) multiplies the references' weights and
        candidate_bonus(text) is added to a candidate's utility (grounding; None: plain).
        Returns {text, source: None (generated) or (kind, training id), utility, n_candidates}."""
        refs, ref_groups, weights = self.pseudo_references(hits, n_references)
        if reference_factors is not None:
            weights = [w * f for w, f in zip(weights, reference_factors([h for h, _ in hits[:n_references]]), strict=False)]
        cands = list(dict.fromkeys(t for t in generated if t.strip()))
        sources: list[tuple[str, str] | None] = [None] * len(cands)
        training = [("retrieved", h) for h, _ in hits[:n_retrieved]]
        training += [("typical", self.ids[i]) for i in self.typical_indices(n_typical) if self.groups[i] != exclude_group]
        for kind, h in training:
            t = self.store.text_of(h)
            if t not in cands:
                cands.append(t)
                sources.append((kind, h))
        if not cands:
            return {"text": generated[0] if generated else "", "source": None, "utility": 0.0, "n_candidates": 0}
        groups = [self.group_of(src[1]) if src else None for src in sources]
        util = self.consensus.utilities(cands, refs, weights, groups, ref_groups)
        score = list(util) if candidate_bonus is None else [u + candidate_bonus(t) for u, t in zip(util, cands, strict=True)]
        best = max(range(len(score)), key=lambda i: (score[i], -i))
        return {"text": cands[best], "source": sources[best], "utility": round(util[best], 4), "n_candidates": len(cands)}

    def consensus_nn(self, hits: Sequence[tuple[str, float]], n_candidates: int, n_references: int) -> str:
        """Retrieval-only consensus (Devlin et al. 2015): among the `n_candidates` nearest
        training reports, the one agreeing most with the `n_references` nearest (other groups)."""
        seen: set[str] = set()
        ids = []
        for h, _ in hits[:n_candidates]:
            if self.store.text_of(h) not in seen:
                seen.add(self.store.text_of(h))
                ids.append(h)
        if not ids:
            return ""
        refs, ref_groups, weights = self.pseudo_references(hits, n_references)
        best, _ = self.consensus.select([self.store.text_of(h) for h in ids], refs, weights, [self.group_of(h) for h in ids], ref_groups)
        return self.store.text_of(ids[best])


__all__ = ["CiderConsensus", "TrainingReports", "consensus_words", "group_weights", "typical_reports"]
