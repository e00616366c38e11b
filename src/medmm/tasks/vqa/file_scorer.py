"""The vqa task's file scorer (`medmm score --task vqa`), torch-free.

    pred {"id", "prediction": str}         ref {"id", "reference": str, "answer_type"?, "question_type"?}

Closed/open accuracy, exact match, token F1 and BLEU (`medmm.metrics.vqa`), by answer and question type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medmm.errors import BadInputError
from medmm.metrics.score import (
    FileScorer,
    Prepared,
    as_float,
    group_ids,
    match_ids,
    read_records,
    register_scorer,
    require_text,
)

_VQA_KEYS = ("overall_accuracy", "closed_accuracy", "open_exact_match", "open_token_f1", "open_bleu1", "open_bleu4")


def prepare_vqa(pred_path: Path, ref_path: Path, *, group_by: str | None = None) -> Prepared:
    """Closed/open VQA metrics, by answer and question type."""
    from medmm.metrics.vqa import _summary, score_item, vqa_metrics

    pred, ref = read_records(pred_path, "prediction"), read_records(ref_path, "reference")
    ids = match_ids(pred, ref, pred_path, ref_path)
    p = [require_text(pred[i]["prediction"], pred_path, i, "prediction") for i in ids]
    r = [require_text(ref[i]["reference"], ref_path, i, "reference") for i in ids]
    empty = [i for i, x in zip(ids, r, strict=True) if not x.strip()]
    if empty:
        raise BadInputError(ref_path, f"{len(empty)} references are empty, e.g. {empty[:3]}")
    at = [ref[i].get("answer_type") for i in ids]
    qt = [ref[i].get("question_type") for i in ids]
    result = vqa_metrics(p, r, answer_types=at, question_types=qt if any(q is not None for q in qt) else None)
    items = [score_item(a, b, t) for a, b, t in zip(p, r, at, strict=True)]

    def aggregate(sel: list[Any]) -> dict[str, float]:
        m = _summary(sel)
        return {k: as_float(m[k]) for k in _VQA_KEYS}

    return Prepared(ids, result, items, aggregate, group_ids(ref, ids, group_by, ref_path))


SCORER = register_scorer("vqa", FileScorer(prepare_vqa))
