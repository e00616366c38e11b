"""Text-generation metrics (BLEU-1..4, METEOR 1.5, ROUGE-L, CIDEr-D) equal to pycocoevalcap's, without Java.

    from medmm.metrics.nlg import score_corpus, score_samples
    score_corpus({"s1": "No acute disease."}, {"s1": ["No acute cardiopulmonary disease."]})
    # {'bleu_1': ..., 'bleu_2': ..., 'bleu_3': ..., 'bleu_4': ..., 'meteor': ..., 'rouge_l': ..., 'cider_d': ...}

Both texts are tokenised the same way (pycocoevalcap's PTB tokenisation, lowercased, punctuation
dropped; see :mod:`medmm.metrics.nlg.tokenize`) unless ``tokenize=False`` (then inputs must already be
space-separated tokens). Corpus scores follow pycocoevalcap: BLEU from summed n-gram counts,
METEOR from summed alignment statistics, ROUGE-L and CIDEr-D as means of per-caption scores. CIDEr-D's
document frequencies come from the references of the whole corpus, so its per-caption scores depend
on the corpus they were computed in.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medmm.errors import BadInputError

__all__ = ["METRICS", "NLGResult", "evaluate", "score_corpus", "score_samples", "pycocoevalcap_names"]

#: Metric families and the score keys each produces.
METRICS: dict[str, tuple[str, ...]] = {
    "bleu": ("bleu_1", "bleu_2", "bleu_3", "bleu_4"),
    "meteor": ("meteor",),
    "rouge_l": ("rouge_l",),
    "cider_d": ("cider_d",),
}

#: medmm key -> the name pycocoevalcap's COCOEvalCap prints for the same number.
pycocoevalcap_names = {
    "bleu_1": "Bleu_1", "bleu_2": "Bleu_2", "bleu_3": "Bleu_3", "bleu_4": "Bleu_4",
    "meteor": "METEOR", "rouge_l": "ROUGE_L", "cider_d": "CIDEr",
}


@dataclass
class NLGResult:
    """Corpus scores and per-sample scores of one evaluation, plus how they were computed."""

    corpus: dict[str, float]
    samples: dict[Hashable, dict[str, float]]
    config: dict[str, Any] = field(default_factory=dict)
    #: Per-sample sufficient statistics for exact corpus scores of any subset (bootstrap):
    #: ``stats["bleu"][id]`` -> ``bleu.bleu_from_stats([...])``, ``stats["meteor"][id]`` ->
    #: ``meteor.meteor_from_stats([...])``. ROUGE-L/CIDEr-D corpus scores are means of per-sample scores.
    stats: dict[str, dict[Hashable, Any]] = field(default_factory=dict)


def _families(metrics: str | Iterable[str] | None) -> list[str]:
    if metrics is None:
        return list(METRICS)
    if isinstance(metrics, str):
        metrics = [metrics]
    out = []
    for m in metrics:
        key = m.lower().replace("-", "_")
        fam = next((f for f, keys in METRICS.items() if key == f or key in keys), None)
        if fam is None:
            raise ValueError(f"unknown metric {m!r}; choose from {sorted(set(METRICS) | {k for v in METRICS.values() for k in v})}")
        if fam not in out:
            out.append(fam)
    return out


def _check(hypotheses: Mapping, references: Mapping, source: str | None) -> list:
    if not isinstance(hypotheses, Mapping) or not isinstance(references, Mapping):
        raise BadInputError(source, "hypotheses and references must be dicts {id: text} and {id: [texts]}")
    if not hypotheses:
        raise BadInputError(source, "no hypotheses to score")
    missing = [k for k in hypotheses if k not in references]
    extra = [k for k in references if k not in hypotheses]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"ids without references: {missing[:5]!r}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"ids without a hypothesis: {extra[:5]!r}{' ...' if len(extra) > 5 else ''}")
        raise BadInputError(source, "hypothesis and reference ids differ; " + "; ".join(parts))
    ids = list(hypotheses)
    for k in ids:
        h = hypotheses[k]
        if not isinstance(h, str):
            raise BadInputError(source, f"id {k!r}: hypothesis must be a string, got {type(h).__name__}")
        refs = references[k]
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise BadInputError(source, f"id {k!r}: references must be a list of strings, got {type(refs).__name__}")
        if len(refs) == 0:
            raise BadInputError(source, f"id {k!r}: empty reference list")
        for r in refs:
            if not isinstance(r, str):
                raise BadInputError(source, f"id {k!r}: reference must be a string, got {type(r).__name__}")
    return ids


def evaluate(
    hypotheses: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    metrics: str | Iterable[str] | None = None,
    tokenize: bool = True,
    source: str | None = None,
) -> NLGResult:
    """Score hypotheses against references; corpus and per-sample scores in one pass.

    ``metrics``: families or keys from :data:`METRICS` (default: all). ``tokenize``: apply
    pycocoevalcap's tokenisation to both sides (default) or take the texts as pre-tokenised.
    ``source``: a file name to put in error messages. Bad input raises ``BadInputError``.
    """
    from medmm.metrics.nlg._ngram_native import ngram_scores
    from medmm.metrics.nlg.bleu import bleu_from_stats, bleu_stats
    from medmm.metrics.nlg.cider import cider_d
    from medmm.metrics.nlg.rouge import rouge_l
    from medmm.metrics.nlg.tokenize import tokenize_corpus

    fams = _families(metrics)
    ids = _check(hypotheses, references, source)
    # Tokenised as pycocoevalcap does: references in one pass, hypotheses in another (line context).
    gts = tokenize_corpus({k: list(references[k]) for k in ids}, tokenize)
    res = tokenize_corpus({k: [hypotheses[k]] for k in ids}, tokenize)
    hyp_str = [res[k][0] for k in ids]
    ref_str = [gts[k] for k in ids]

    corpus: dict[str, float] = {}
    per: dict[Hashable, dict[str, float]] = {k: {} for k in ids}
    stats: dict[str, dict[Hashable, Any]] = {}

    def put(key: str, values: list[float]) -> None:
        for k, v in zip(ids, values, strict=True):
            per[k][key] = v

    # BLEU / ROUGE-L / CIDEr-D: the compiled kernel when available, else the Python reference.
    fast = ngram_scores(hyp_str, ref_str, "bleu" in fams, "cider_d" in fams, "rouge_l" in fams) \
        if {"bleu", "rouge_l", "cider_d"} & set(fams) else None
    if fast is not None:
        bst, cider_p, rouge_p = fast
    else:
        hyp_tok = [h.split() for h in hyp_str]
        ref_tok = [[r.split() for r in rs] for rs in ref_str]
        bst = [bleu_stats(h, rs) for h, rs in zip(hyp_tok, ref_tok, strict=True)] if "bleu" in fams else None
        cider_p = cider_d(hyp_tok, ref_tok) if "cider_d" in fams else None
        rouge_p = [rouge_l(h, rs) for h, rs in zip(hyp_str, ref_str, strict=True)] if "rouge_l" in fams else None
    if "bleu" in fams:
        stats["bleu"] = dict(zip(ids, bst, strict=True))
        c, p = bleu_from_stats(bst)
        for n in range(4):
            corpus[f"bleu_{n + 1}"] = c[n]
            put(f"bleu_{n + 1}", [s[n] for s in p])
    if "meteor" in fams:
        from medmm.metrics.nlg.meteor import meteor_scores

        c, p, mst = meteor_scores(hyp_str, ref_str, return_stats=True)
        stats["meteor"] = dict(zip(ids, mst, strict=True))
        corpus["meteor"] = c
        put("meteor", p)
    if "rouge_l" in fams:
        corpus["rouge_l"] = sum(rouge_p) / len(rouge_p)
        put("rouge_l", rouge_p)
    if "cider_d" in fams:
        corpus["cider_d"] = sum(cider_p) / len(cider_p)
        put("cider_d", cider_p)
    for d in [corpus, *per.values()]:
        for key, v in d.items():
            if not math.isfinite(v):  # pragma: no cover - guarded by the formulas; never hand out NaN
                raise ArithmeticError(f"{key} is not finite ({v})")
    return NLGResult(corpus, per, {"tokenize": tokenize, "metrics": fams, "n": len(ids)}, stats)


def score_corpus(
    hypotheses: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    metrics: str | Iterable[str] | None = None,
    tokenize: bool = True,
    source: str | None = None,
) -> dict[str, float]:
    """Corpus scores ``{"bleu_1": ..., "meteor": ..., "rouge_l": ..., "cider_d": ...}`` (see :func:`evaluate`)."""
    return evaluate(hypotheses, references, metrics, tokenize, source).corpus


def score_samples(
    hypotheses: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    metrics: str | Iterable[str] | None = None,
    tokenize: bool = True,
    source: str | None = None,
) -> dict[Hashable, dict[str, float]]:
    """Per-sample scores ``{id: {"bleu_1": ..., ...}}`` (see :func:`evaluate`)."""
    return evaluate(hypotheses, references, metrics, tokenize, source).samples
