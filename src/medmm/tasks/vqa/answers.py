"""VQA answers: how an answer is normalised, which questions are closed, how records are scored.

One place for the rules every VQA component shares: the task's vocabulary and routing, the
metrics of a run and the benchmarks' baselines all compare answers with
:func:`normalise_vqa_answer` and route with :func:`is_closed_question`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from medmm.data.schema import Sample
from medmm.metrics.headline import Units
from medmm.metrics.vqa import normalise_answer, score_item, vqa_metrics

_CANONICAL = {"y": "yes", "yeah": "yes", "yes it is": "yes", "true": "yes", "n": "no", "false": "no", "not": "no"}
_YES_NO_START = re.compile(r"^(is|are|was|were|does|do|did|can|could|has|have|had|will|would|should|shall)\b")


def normalise_vqa_answer(text: str) -> str:
    """Answer as the vocabulary and the metrics see it: `normalise_answer` + canonical yes/no."""
    a = normalise_answer(text)
    return _CANONICAL.get(a, a)


def is_closed_question(question: str, answer_type: str | None) -> bool:
    """Closed when answer_type says CLOSED; with no type, a yes/no-style question without ' or '."""
    if answer_type:
        return answer_type.strip().upper() == "CLOSED"
    q = question.strip().lower()
    return bool(_YES_NO_START.match(q)) and " or " not in q


def answer_type(s: Sample) -> str | None:
    """The sample's answer type (CLOSED / OPEN, upper case) when the dataset gives one."""
    a = s.targets.get("answer_type") or s.meta.get("answer_type")
    return str(a).strip().upper() if a else None


def question_type(s: Sample) -> str | None:
    """The dataset's question type (VQA-RAD question_type, SLAKE content_type) when given."""
    q = s.meta.get("question_type") or s.targets.get("content_type")
    return str(q) if q else None


def headline_scores(em: np.ndarray, closed: np.ndarray, f1: np.ndarray) -> dict[str, float]:
    """Overall/closed accuracy, open exact match and token F1 of per-question exact matches,
    closed flags and token F1s (the numbers `vqa_scores` gives CIs for)."""
    return {
        "overall_accuracy": float(em.mean()),
        "closed_accuracy": float(em[closed].mean()) if closed.any() else math.nan,
        "open_exact_match": float(em[~closed].mean()) if (~closed).any() else math.nan,
        "open_token_f1": float(f1[~closed].mean()) if (~closed).any() else math.nan,
    }


def _item_arrays(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exact match, closed, token F1) per record."""
    items = [score_item(str(r["prediction"]), str(r["reference"]), r.get("answer_type")) for r in records]
    return (np.array([it["exact_match"] for it in items]), np.array([it["closed"] for it in items], dtype=bool),
            np.array([it["token_f1"] for it in items]))


def _groups(records: list[dict[str, Any]]) -> list[str]:
    """Resampling groups of VQA records: the image (questions on one image are correlated)."""
    return [str(r.get("group") or r.get("image_path") or r.get("id")) for r in records]


def vqa_units(records: list[dict[str, Any]], key: str = "overall_accuracy") -> Units:
    """One unit per question, grouped by image (`medmm.metrics.headline`): predictions (exact
    match, token F1), references (closed,); fn = `headline_scores`."""
    em, closed, f1 = _item_arrays(records)
    return Units([str(r["id"]) for r in records], _groups(records), (em.astype(float), f1), (closed,),
                 lambda em_, f1_, closed_: headline_scores(em_, closed_, f1_))


def vqa_scores(records: list[dict[str, Any]], n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Closed/open/overall accuracy, open token-F1/BLEU, by type, with CIs grouped by image.

    Records need prediction, reference, answer_type; question_type, group (image id) and source
    are optional. Intervals: percentile bootstrap over images (`medmm.metrics.stats.bootstrap_ci`).
    """
    from medmm.metrics.stats import bootstrap_ci

    preds = [str(r["prediction"]) for r in records]
    refs = [str(r["reference"]) for r in records]
    atypes = [r.get("answer_type") for r in records]
    qtypes = [r.get("question_type") for r in records]
    out = vqa_metrics(preds, refs, answer_types=atypes, question_types=qtypes if any(qtypes) else None)
    em, closed, f1 = _item_arrays(records)

    if n_resamples > 0:
        ci = bootstrap_ci(headline_scores, em, closed, f1, n_resamples=n_resamples, seed=seed, groups=_groups(records))
        out["ci"] = {k: [ci["low"][k], ci["high"][k]] for k in ci["estimate"]}
        out["ci_method"] = ci["method"]
        out["n_images"] = ci["n_units"]
    routed = [(r.get("routed_type"), r.get("answer_type")) for r in records if r.get("routed_type") and r.get("answer_type")]
    if routed:  # how often the question-only router sent a question to its annotated type
        out["answer_type_routing_accuracy"] = float(np.mean([a == str(b).upper() for a, b in routed]))
    sources = [r.get("source") for r in records]
    if any(sources):
        dec = [i for i, s in enumerate(sources) if s == "decoder"]
        out["routing"] = {
            "decoder_fraction": len(dec) / len(records),
            "decoder_accuracy": float(em[dec].mean()) if dec else None,
            "classifier_accuracy": float(np.delete(em, dec).mean()) if len(dec) < len(records) else None,
        }
        if all("classifier_prediction" in r for r in records) and (~closed).any():
            # what the open questions would score without the decoder (to judge the routing rule)
            cls_em = [score_item(str(r["classifier_prediction"]), r["reference"], a)["exact_match"]
                      for r, a, c in zip(records, atypes, closed, strict=True) if not c]
            out["routing"]["open_classifier_only_exact_match"] = float(np.mean(cls_em))
    return out
