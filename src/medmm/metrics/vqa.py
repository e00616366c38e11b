"""VQA metrics: closed accuracy, open exact match, open token-F1 and BLEU, by type.

Answers are compared after :func:`normalise_answer` (Unicode NFKC, lower case, punctuation
and the articles a/an/the removed, whitespace collapsed), applied the SAME way to predictions
and references. A question is closed when its ``answer_type`` says CLOSED, or, when no type is
given, when the normalised reference is "yes" or "no".

BLEU here is sentence-level BLEU-1 and BLEU-4 (geometric mean of clipped 1..4-gram
precisions with add-one smoothing for n > 1, Lin & Och 2004, times the brevity penalty),
averaged over open questions; short answers make corpus BLEU-4 meaningless.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

from medmm.metrics.provenance import provenance

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}‘’“”]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
NORMALISATION = "NFKC, lower case, punctuation -> space, articles a/an/the removed, whitespace collapsed, whitespace tokens"


def normalise_answer(text: str) -> str:
    """Normalised answer string used by every VQA metric."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = _PUNCT.sub(" ", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 of two normalised answers (both empty = 1, one empty = 0)."""
    p, r = prediction.split(), reference.split()
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def sentence_bleu(prediction: str, reference: str, max_n: int = 4) -> float:
    """Sentence BLEU-``max_n`` with add-one smoothing for n > 1 (0 for an empty prediction)."""
    p, r = prediction.split(), reference.split()
    if not p or not r:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        pn = Counter(tuple(p[i:i + n]) for i in range(len(p) - n + 1))
        rn = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
        match = sum((pn & rn).values())
        total = max(len(p) - n + 1, 0)
        if n == 1:
            if match == 0:
                return 0.0
            prec = match / total
        else:
            prec = (match + 1) / (total + 1)
        log_sum += math.log(prec)
    bp = 1.0 if len(p) > len(r) else math.exp(1 - len(r) / len(p))
    return bp * math.exp(log_sum / max_n)


def is_closed(reference: str, answer_type: str | None) -> bool:
    """Closed question: answer_type CLOSED, or (no type given) a yes/no reference."""
    if answer_type:
        return answer_type.strip().upper() == "CLOSED"
    return normalise_answer(reference) in {"yes", "no"}


def score_item(prediction: str, reference: str, answer_type: str | None = None) -> dict[str, Any]:
    """Per-question scores: exact match, token F1, BLEU-1/4 and whether it is closed."""
    p, r = normalise_answer(prediction), normalise_answer(reference)
    return {
        "closed": is_closed(reference, answer_type),
        "exact_match": float(p == r),
        "token_f1": token_f1(p, r),
        "bleu1": sentence_bleu(p, r, 1),
        "bleu4": sentence_bleu(p, r, 4),
    }


def _summary(items: list[dict[str, Any]]) -> dict[str, Any]:
    closed = [s for s in items if s["closed"]]
    opened = [s for s in items if not s["closed"]]

    def mean(rows: list[dict[str, Any]], key: str) -> float | None:
        return sum(r[key] for r in rows) / len(rows) if rows else None

    return {
        "n": len(items),
        "n_closed": len(closed),
        "n_open": len(opened),
        "overall_accuracy": mean(items, "exact_match"),
        "closed_accuracy": mean(closed, "exact_match"),
        "open_exact_match": mean(opened, "exact_match"),
        "open_token_f1": mean(opened, "token_f1"),
        "open_bleu1": mean(opened, "bleu1"),
        "open_bleu4": mean(opened, "bleu4"),
    }


def vqa_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    answer_types: Sequence[str | None] | None = None,
    question_types: Sequence[str | None] | None = None,
    with_provenance: bool = True,
) -> dict[str, Any]:
    """Overall, closed/open, per answer type and per question type VQA scores.

    A value is ``None`` when its subset is empty (no open questions, ...), never NaN.
    """
    n = len(predictions)
    if n == 0:
        raise ValueError("no answers to score")
    if len(references) != n:
        raise ValueError(f"{n} predictions but {len(references)} references")
    for name, seq in (("answer_types", answer_types), ("question_types", question_types)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} answers")
    atypes = list(answer_types) if answer_types is not None else [None] * n
    items = [score_item(p, r, a) for p, r, a in zip(predictions, references, atypes, strict=True)]
    out = _summary(items)
    if question_types is not None:
        groups: dict[str, list[dict[str, Any]]] = {}
        for item, qt in zip(items, question_types, strict=True):
            # case-normalised: VQA-RAD writes both "OTHER" and "Other"
            groups.setdefault(str(qt).strip().upper() if qt else "unknown", []).append(item)
        out["by_question_type"] = {k: _summary(v) for k, v in sorted(groups.items())}
    by_answer: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_answer.setdefault("CLOSED" if item["closed"] else "OPEN", []).append(item)
    out["by_answer_type"] = {k: _summary(v) for k, v in sorted(by_answer.items())}
    if with_provenance:
        out["provenance"] = provenance(
            "vqa",
            implementation="medmm.metrics.vqa (exact match, SQuAD-style token F1, sentence BLEU-1/4 add-one smoothed)",
            n_samples=n,
            tokenisation=NORMALISATION,
            label_handling={"closed": "answer_type CLOSED, else yes/no reference when no type given"},
        )
    return out


class VQAMetric:
    """Accumulates answers batch by batch; ``compute()`` returns :func:`vqa_metrics`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every answer seen so far."""
        self._p: list[str] = []
        self._r: list[str] = []
        self._a: list[str | None] = []
        self._q: list[str | None] = []

    def update(self, predictions: Sequence[str], references: Sequence[str],
               answer_types: Sequence[str | None] | None = None,
               question_types: Sequence[str | None] | None = None) -> None:
        """Add a batch of answers (types optional)."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        self._p += list(predictions)
        self._r += list(references)
        self._a += list(answer_types) if answer_types is not None else [None] * len(predictions)
        self._q += list(question_types) if question_types is not None else [None] * len(predictions)

    def compute(self) -> dict[str, Any]:
        """Scores over every answer since the last reset."""
        has_q = any(q is not None for q in self._q)
        return vqa_metrics(self._p, self._r, answer_types=self._a,
                           question_types=self._q if has_q else None)
