"""The report_generation task's file scorer (`medmm score --task report_generation`), torch-free.

    pred {"id", "prediction": str}         ref {"id", "reference": str | [str]}

NLG metrics (`medmm.metrics.nlg`) and clinical efficacy (`medmm.metrics.clinical`). The old
name ``report`` still selects it, with a deprecation warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medmm.errors import BadInputError
from medmm.metrics.provenance import provenance
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


def prepare_report(pred_path: Path, ref_path: Path, *, group_by: str | None = None, observations: str = "14",
                   uncertain: str = "ignore", missing: str = "negative",
                   model_metrics: dict[str, str] | None = None) -> Prepared:
    """NLG metrics (medmm.metrics.nlg) + clinical efficacy of generated reports, plus the optional
    model-based metrics (medmm.metrics.model_based) named in ``model_metrics`` ({name: weights})."""
    from medmm.metrics.clinical import clinical_efficacy, label_report
    from medmm.metrics.nlg import METRICS, evaluate
    from medmm.metrics.nlg.bleu import bleu_from_stats, bleu_stats
    from medmm.metrics.nlg.tokenize import tokenize_corpus

    pred, ref = read_records(pred_path, "prediction"), read_records(ref_path, "reference")
    ids = match_ids(pred, ref, pred_path, ref_path)
    hyps = {i: require_text(pred[i]["prediction"], pred_path, i, "prediction") for i in ids}
    refs: dict[str, list[str]] = {}
    for i in ids:
        r = ref[i]["reference"]
        r = [r] if isinstance(r, str) else r
        if not isinstance(r, list) or not r or not all(isinstance(x, str) and x.strip() for x in r):
            raise BadInputError(ref_path, f"id {i!r}: reference must be a non-empty string or list of them")
        refs[i] = r
    families = list(METRICS)
    unavailable: list[str] = []
    try:
        res = evaluate(hyps, refs, families, source=str(pred_path))
    except ImportError as exc:  # an NLG family not installed: say so in the output
        unavailable = [f for f in families if f in str(exc)] or ["meteor"]
        families = [f for f in families if f not in unavailable]
        res = evaluate(hyps, refs, families, source=str(pred_path))
    hyp_labels = [label_report(hyps[i]) for i in ids]
    ref_labels = [label_report(refs[i][0]) for i in ids]
    ce_kwargs = dict(observations=observations, uncertain=uncertain, missing=missing)
    ce = clinical_efficacy(hyp_labels, ref_labels, **ce_kwargs)
    result: dict[str, Any] = {
        "nlg": res.corpus,
        "clinical_efficacy": {k: v for k, v in ce.items() if k != "provenance"},
        "n_empty_predictions": sum(1 for i in ids if not hyps[i].strip()),
        "provenance": provenance(
            "report", implementation="medmm.metrics.nlg (pycocoevalcap-equivalent) + medmm.metrics.clinical",
            n_samples=len(ids), tokenisation="pycocoevalcap PTB tokeniser, lower case, punctuation removed (both sides)",
            label_handling=ce["provenance"]["label_handling"], nlg_unavailable=unavailable,
            clinical_reference="first reference per id", labeller=ce["provenance"]["implementation"]),
    }
    labelled: dict[str, Any] = {}
    # model-based labels travel in the per-sample items (not looked up by position), so that a paired
    # test's swaps between two systems carry each system's own labels
    mm: list[Any] = [None] * len(ids)
    if model_metrics:  # off by default: loads published weights, needs torch + transformers
        from medmm.metrics import model_based

        labelled = model_based.label_with_models(model_metrics, [hyps[i] for i in ids], [refs[i][0] for i in ids])
        mm = model_based.per_sample(labelled)
        result["model_metrics"] = {**model_based.aggregate(labelled),
                                   "provenance": {k: v["provenance"] for k, v in labelled.items()}}
    # Per-sample items for resampling. Corpus BLEU is recomputed from per-sample n-gram
    # statistics (exact); ROUGE-L is a mean of per-sample scores (exact); CIDEr-D keeps the
    # document frequencies of the full reference corpus. Corpus METEOR pools alignment
    # statistics that the nlg API does not expose, and the mean of per-sample METEOR is a
    # different number, so METEOR gets no interval and no test.
    gts = tokenize_corpus({i: refs[i] for i in ids})
    rs = tokenize_corpus({i: [hyps[i]] for i in ids})
    items = [{"bleu": bleu_stats(rs[i][0].split(), [r.split() for r in gts[i]]), "scores": res.samples[i],
              "hyp": hyp_labels[k], "ref": ref_labels[k], "mm": mm[k]} for k, i in enumerate(ids)]

    def aggregate(sel: list[Any]) -> dict[str, float]:
        d: dict[str, float] = {}
        if "bleu" in families:
            corpus, _ = bleu_from_stats([it["bleu"] for it in sel])
            d.update({f"nlg.bleu_{k + 1}": v for k, v in enumerate(corpus)})
        for key in ("rouge_l", "cider_d"):
            if key in families:
                d[f"nlg.{key}"] = float(np.mean([it["scores"][key] for it in sel]))
        c = clinical_efficacy([it["hyp"] for it in sel], [it["ref"] for it in sel], with_provenance=False, **ce_kwargs)
        for avg in ("micro", "macro"):
            for key, v in c[avg].items():
                d[f"clinical_efficacy.{avg}.{key}"] = as_float(v)
        if labelled:
            from medmm.metrics import model_based

            d.update(model_based.flat_scores([it["mm"] for it in sel]))
        return d

    note = ("BLEU exact per resample; ROUGE-L exact; CIDEr-D with full-corpus document frequencies; "
            "METEOR: no interval (corpus statistics not exposed)")
    return Prepared(ids, result, items, aggregate, group_ids(ref, ids, group_by, ref_path), note)


def one_time_setup() -> None:
    """Build what report scoring caches on first use, saying so on stderr: the compiled NLG kernels
    (C, a few seconds) and METEOR's paraphrase index (5.3 M pairs, ~30 s on 2 CPU cores). Later
    calls find both in the cache folder and print nothing."""
    import os
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from medmm.errors import MedmmError
    from medmm.metrics.nlg import _native, meteor_data

    if not os.environ.get("MEDMM_NO_NATIVE") and not _native.library_path().is_file():
        print(f"one-time setup: compiling the NLG metric kernels into {_native.library_path().parent} ...", file=sys.stderr)
        _native.load()
    try:
        gz = meteor_data.resource_paths()[1]
    except MedmmError:
        return  # METEOR's data is not installed: scoring names what is missing
    state: dict = {}

    def show(done: int, total: int) -> None:
        if "bar" not in state:
            print("one-time setup: indexing METEOR's 5.3 M English paraphrases (about 30 s; later calls reuse the index)",
                  file=sys.stderr)
            state["bar"] = Progress(TextColumn("reading paraphrase-en.gz"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                                    console=Console(stderr=True))
            state["bar"].start()
            state["job"] = state["bar"].add_task("index", total=total)
        state["bar"].update(state["job"], completed=done)

    try:
        meteor_data.ensure_paraphrase_index(gz, progress=show)
    finally:
        if "bar" in state:
            state["bar"].stop()


SCORER = register_scorer("report_generation", FileScorer(prepare_report, ("observations", "uncertain", "missing", "model_metrics"),
                                                         aliases=("report",), setup=one_time_setup))
