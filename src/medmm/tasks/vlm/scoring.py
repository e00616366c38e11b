"""How VLM predictions are scored, with the SAME rules as medmm's other VQA and report tasks.

The one place this package reaches into the vqa and report_generation tasks' modules (answer
normalisation, closed-question rule, option detection, scores with bootstrap CIs, metric
definitions), so that a VLM's numbers are comparable with theirs and a move of those modules
changes only these imports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medmm.data.schema import Sample
from medmm.tasks.report.scoring import report_scores
from medmm.tasks.vqa.answers import answer_type, is_closed_question, normalise_vqa_answer, question_type, vqa_scores
from medmm.tasks.vqa.choices import choice_options
from medmm.tasks.vqa.floors import VQA_METRIC_DEFINITIONS

REPORT_METRIC_DEFINITIONS = {
    "bleu_1..4, meteor, rouge_l, cider_d": "corpus scores of medmm.metrics.nlg (pycocoevalcap definitions, PTB "
                                          "tokenisation; docs/metrics-nlg.md)",
    "clinical_efficacy": "micro/macro P/R/F1 of the rule labeller's observations, prediction vs reference",
    "ci": "95% percentile bootstrap, resampling groups (studies)",
}
VLM_VQA_DEFINITIONS = {
    **VQA_METRIC_DEFINITIONS,
    "answered_by": "a question is answered among its options (yes/no for a yes/no question by the question-only rule "
                   "of medmm.tasks.vqa.answers.is_closed_question; the training answers it names for an 'A or B' "
                   "question) by the highest summed log-likelihood of the option's answer tokens; every other "
                   "question by free generation",
}

__all__ = ["REPORT_METRIC_DEFINITIONS", "VLM_VQA_DEFINITIONS", "answer_type", "choice_options", "is_closed_question",
           "normalise_vqa_answer", "question_type", "report_floors", "report_metrics", "vqa_floors", "vqa_metrics"]


def vqa_metrics(records: list[dict[str, Any]], n_resamples: int) -> dict[str, Any]:
    """medmm.metrics.vqa scores (normalised exact match, closed/open, token F1) with CIs by image."""
    return vqa_scores(records, n_resamples=n_resamples)


def report_metrics(records: list[dict[str, Any]], n_resamples: int) -> dict[str, Any]:
    """NLG + clinical-efficacy scores of the records that have a reference report."""
    scored = [r for r in records if str(r.get("reference") or "").strip()]
    if not scored:
        raise ValueError(f"none of the {len(records)} records has a reference report to score against")
    return report_scores(scored, "prediction", n_resamples)


def vqa_floors(train_samples: list[Sample], records: list[dict[str, Any]], n_resamples: int) -> dict[str, Any]:
    """Answer prior and question-only nearest neighbour (`medmm.metrics.floors.vqa_floors`), with
    questions routed closed/open by the same question-only rule the VLM's options use."""
    from medmm.metrics.floors import vqa_floors as floors

    train = [s for s in train_samples if s.text.get("question", "").strip() and s.text.get("answer", "").strip()]
    questions = [s.text["question"] for s in train]
    return floors(questions, [s.text["answer"] for s in train], [is_closed_question(q, answer_type(s)) for q, s in zip(questions, train, strict=True)],
                  [str(r["question"]) for r in records], [str(r["reference"]) for r in records],
                  [r.get("answer_type") for r in records], [r.get("routed_type") == "CLOSED" for r in records],
                  [str(r["prediction"]) for r in records], groups=[str(r.get("group") or r["id"]) for r in records],
                  n_resamples=n_resamples)


def report_floors(train_samples: list[Sample], samples: list[Sample], records: list[dict[str, Any]], text_field: str,
                  n_resamples: int) -> dict[str, Any]:
    """The report of the nearest training image by pixel thumbnails (`medmm.metrics.floors.report_floors`)."""
    from medmm.metrics import floors as F

    train = [s for s in train_samples if s.images and (s.text.get(text_field) or "").strip()]
    by_id = {s.id: s for s in samples}
    scored = [r for r in records if str(r.get("reference") or "").strip() and by_id.get(r["id"]) and by_id[r["id"]].images]
    if not train or not scored:
        return {"skipped": "no training or scored sample with both an image and a report"}
    px = F.PixelThumbnails()
    return F.report_floors(px.matrix([s.images[0] for s in train]), [s.text[text_field].strip() for s in train],
                           px.matrix([by_id[r["id"]].images[0] for r in scored]), [r["reference"] for r in scored],
                           [r["prediction"] for r in scored], groups=[r.get("group") or r["id"] for r in scored],
                           n_resamples=n_resamples)


def best_option(logprobs: list[float]) -> int:
    """Index of the most likely option (the first one on a tie)."""
    return int(np.argmax(np.asarray(logprobs, dtype=np.float64)))
