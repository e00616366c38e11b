"""Scoring and provenance of generated reports: the NLG + clinical-efficacy scores (with
bootstrap CIs by group) of one prediction field of the task's records, and sentence-level
provenance (which training reports share a generated sentence's words).

    scores = report_scores(records, "prediction", n_resamples=1000)   # bleu_1..4, meteor, rouge_l, cider_d, ci
    prov = sentence_provenance(["small", "effusion", "."], [("id7", "Small effusion.")])
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from medmm.models.decoders import join_tokens

NLG_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d")
_STOP = frozenset("a an the of and or in on at to with is are was were be there this that for by as from no not".split())


def report_scores(records: list[dict[str, Any]], field: str = "prediction", n_resamples: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
    """NLG + clinical-efficacy scores of `records[field]` against `records["reference"]`.

    Computed by the task's file scorer (`medmm.tasks.report.file_scorer` through
    `medmm.metrics.score.score_files`: medmm.metrics.nlg, the clinical labeller and
    medmm.metrics.stats percentile bootstrap resampling records by their "group"). Returns the
    seven NLG metrics at top level, ``clinical_efficacy`` micro/macro P/R/F1 and ``ci``
    {metric: [low, high]} (METEOR has none; see docs/metrics.md).
    """
    import medmm.tasks.report.file_scorer  # noqa: F401  (registers the scorer score_files runs)
    from medmm.metrics.score import score_files

    with tempfile.TemporaryDirectory() as d:
        pred, ref = Path(d) / "pred.jsonl", Path(d) / "ref.jsonl"
        with open(pred, "w", encoding="utf-8") as fp, open(ref, "w", encoding="utf-8") as fr:
            for r in records:
                fp.write(json.dumps({"id": r["id"], "prediction": r[field]}) + "\n")
                fr.write(json.dumps({"id": r["id"], "reference": r["reference"], "group": r.get("group") or r["id"]}) + "\n")
        res = score_files("report_generation", pred, ref, bootstrap=n_resamples, seed=seed, group_by="group")
    out: dict[str, Any] = {k: res["nlg"].get(k) for k in NLG_KEYS}
    ce = res["clinical_efficacy"]
    out["clinical_efficacy"] = {"micro": ce["micro"], "macro": ce["macro"]}
    if "ci" in res:
        out["ci"] = {k.removeprefix("nlg.").replace("clinical_efficacy.", "ce_").replace(".", "_"): [v["low"], v["high"]]
                     for k, v in res["ci"].items()}
        out["ci_method"] = res["provenance"].get("ci_method")
    return out


_SENT_END = {".", "!", "?"}


def _content(words: list[str]) -> set[str]:
    return {w for w in words if w not in _STOP and re.search(r"[a-z0-9]", w)}


def sentence_provenance(words: list[str], retrieved: list[tuple[str, str]], used_by_model: bool = True,
                        top: int = 2) -> list[dict[str, Any]]:
    """Per generated sentence: the retrieved training reports sharing most of its content words.

    `retrieved` is [(training id, report text)]; overlap = |sentence words in report| /
    |sentence words| (stop words left out). Sources with zero overlap are not listed.
    ``used_by_model`` says whether the decoder saw these reports (RAG) or they are only the
    nearest training reports (supporting evidence).
    """
    from medmm.models.decoders import word_tokenize

    sentences: list[list[str]] = []
    cur: list[str] = []
    for w in words:
        cur.append(w)
        if w in _SENT_END:
            sentences.append(cur)
            cur = []
    if cur:
        sentences.append(cur)
    ref_words = [(rid, _content(word_tokenize(text))) for rid, text in retrieved]
    out = []
    for sent in sentences:
        cw = _content(sent)
        scored = sorted(((len(cw & rw) / len(cw), rid) for rid, rw in ref_words if cw), key=lambda t: -t[0])
        sources = [{"id": rid, "overlap": round(o, 3)} for o, rid in scored if o > 0][:top]
        out.append({"text": join_tokens(sent), "sources": sources, "used_by_model": used_by_model})
    return out


__all__ = ["NLG_KEYS", "report_scores", "sentence_provenance"]
