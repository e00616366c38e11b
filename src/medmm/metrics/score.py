"""Score prediction files against reference files: the library behind ``medmm score``.

File formats (UTF-8 JSON lines, one record per sample, matched by ``"id"``):

  report          pred {"id", "prediction": str}         ref {"id", "reference": str | [str]}
  vqa             pred {"id", "prediction": str}         ref {"id", "reference": str,
                                                              "answer_type"?, "question_type"?}
  classification  pred {"id", "prediction": p | [p...]}  ref {"id", "reference": 0/1 | class index |
                                                              [0/1/null per label]}
  segmentation    pred {"id", "prediction": mask path}   ref {"id", "reference": mask path}
                  (paths relative to the JSONL file's folder; nonzero = foreground, or label maps
                   with ``classes``)
  retrieval       pred: .npy similarity matrix (row i = query i, column i its match) or .npz with
                  two embedding arrays (e.g. "image", "text"; row i of each is one pair);
                  ref (optional): .npy boolean relevance matrix, or .jsonl with one record per row
                  in matrix order (ids and group fields for ``group_by``).

Any other field of a reference record (e.g. "patient_id") can name the resampling group with
``group_by``. Mismatched or duplicate ids, missing fields and empty references raise
``BadInputError`` naming the file; an empty prediction is scored (it earns 0 where a metric
has a 0), never skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medmm.errors import BadInputError
from medmm.metrics import stats
from medmm.metrics.provenance import provenance

TASKS = ("report", "vqa", "retrieval", "classification", "segmentation")


# ----------------------------------------------------------------------------- reading
def read_records(path: str | Path, field: str) -> dict[str, dict[str, Any]]:
    """JSONL records keyed by ``id``; each must carry ``field``. Duplicate ids are an error."""
    from medmm.data.io import read_jsonl

    path = Path(path)
    out: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(read_jsonl(path), start=1):
        if not isinstance(rec, dict) or "id" not in rec:
            raise BadInputError(path, f"record {i} is not an object with an 'id'")
        rid = str(rec["id"])
        if rid in out:
            raise BadInputError(path, f"id {rid!r} appears more than once")
        if field not in rec or rec[field] is None:
            raise BadInputError(path, f"id {rid!r} has no {field!r} field")
        out[rid] = rec
    if not out:
        raise BadInputError(path, "no records")
    return out


def match_ids(pred: dict[str, Any], ref: dict[str, Any], pred_path: Path, ref_path: Path) -> list[str]:
    """The common ids in reference order; any id on one side only is an error."""
    only_pred = [k for k in pred if k not in ref]
    only_ref = [k for k in ref if k not in pred]
    if only_pred:
        raise BadInputError(pred_path, f"{len(only_pred)} ids have no reference in {ref_path}, e.g. {only_pred[:3]}")
    if only_ref:
        raise BadInputError(pred_path, f"{len(only_ref)} reference ids of {ref_path} have no prediction, e.g. {only_ref[:3]}")
    return list(ref)


def _groups(ref: dict[str, dict[str, Any]], ids: list[str], group_by: str | None, path: Path) -> list[str] | None:
    if not group_by:
        return None
    missing = [i for i in ids if ref[i].get(group_by) in (None, "")]
    if missing:
        raise BadInputError(path, f"{len(missing)} records have no {group_by!r} to group by, e.g. {missing[:3]}")
    return [str(ref[i][group_by]) for i in ids]


def _text(value: Any, path: Path, rid: str, what: str) -> str:
    if not isinstance(value, str):
        raise BadInputError(path, f"id {rid!r}: {what} must be a string, got {type(value).__name__}")
    return value


def _add_ci(out: dict[str, Any], metric_fn: Callable[..., Any], inputs: tuple, n: int, seed: int,
            groups: list[str] | None) -> None:
    if n <= 0:
        return
    ci = stats.bootstrap_ci(metric_fn, *inputs, n_resamples=n, seed=seed, groups=groups)
    out["ci"] = {k: {"low": ci["low"][k], "high": ci["high"][k], "n_invalid": ci["n_invalid"][k]}
                 for k in ci["estimate"]}
    out["provenance"]["ci_method"] = ci["method"]
    out["provenance"]["seed"] = seed
    out["provenance"]["ci_units"] = ci["n_units"]


# ----------------------------------------------------------------------------- tasks
def score_report(pred_path: Path, ref_path: Path, *, bootstrap: int = 0, seed: int = 0,
                 group_by: str | None = None, observations: str = "14", uncertain: str = "ignore",
                 missing: str = "negative") -> dict[str, Any]:
    """NLG metrics (medmm.metrics.nlg) + clinical efficacy of generated reports."""
    from medmm.metrics.clinical import clinical_efficacy, label_report
    from medmm.metrics.nlg import METRICS, evaluate
    from medmm.metrics.nlg.bleu import bleu_from_stats, bleu_stats
    from medmm.metrics.nlg.tokenize import tokenize_corpus

    pred, ref = read_records(pred_path, "prediction"), read_records(ref_path, "reference")
    ids = match_ids(pred, ref, pred_path, ref_path)
    hyps = {i: _text(pred[i]["prediction"], pred_path, i, "prediction") for i in ids}
    refs: dict[str, list[str]] = {}
    for i in ids:
        r = ref[i]["reference"]
        r = [r] if isinstance(r, str) else r
        if not isinstance(r, list) or not r or not all(isinstance(x, str) and x.strip() for x in r):
            raise BadInputError(ref_path, f"id {i!r}: reference must be a non-empty string or list of them")
        refs[i] = r
    families = list(METRICS)
    unavailable = []
    try:
        res = evaluate(hyps, refs, families, source=str(pred_path))
    except ModuleNotFoundError as exc:  # an NLG family not installed/landed: say so in the output
        unavailable = [f for f in families if f in str(exc)] or ["meteor"]
        families = [f for f in families if f not in unavailable]
        res = evaluate(hyps, refs, families, source=str(pred_path))
    hyp_labels = [label_report(hyps[i]) for i in ids]
    ref_labels = [label_report(refs[i][0]) for i in ids]
    ce_kwargs = dict(observations=observations, uncertain=uncertain, missing=missing)
    ce = clinical_efficacy(hyp_labels, ref_labels, **ce_kwargs)
    out: dict[str, Any] = {
        "task": "report",
        "nlg": res.corpus,
        "clinical_efficacy": {k: v for k, v in ce.items() if k != "provenance"},
        "n_empty_predictions": sum(1 for i in ids if not hyps[i].strip()),
        "provenance": provenance(
            "report", implementation="medmm.metrics.nlg (pycocoevalcap-equivalent) + medmm.metrics.clinical",
            n_samples=len(ids), tokenisation="pycocoevalcap PTB tokeniser, lower case, punctuation removed (both sides)",
            label_handling=ce["provenance"]["label_handling"], nlg_unavailable=unavailable,
            clinical_reference="first reference per id", labeller=ce["provenance"]["implementation"]),
    }
    if bootstrap:
        # Corpus BLEU is recomputed from per-sample n-gram statistics on each resample (exact);
        # ROUGE-L is a mean of per-sample scores (exact); CIDEr-D keeps the document
        # frequencies of the full corpus. Corpus METEOR pools alignment statistics that the
        # nlg API does not expose, and the mean of per-sample METEOR is a different number
        # (its interval need not contain the corpus score), so METEOR gets no interval.
        gts = tokenize_corpus({i: refs[i] for i in ids})
        rs = tokenize_corpus({i: [hyps[i]] for i in ids})
        bstats = [bleu_stats(rs[i][0].split(), [r.split() for r in gts[i]]) for i in ids]
        per = [res.samples[i] for i in ids]
        idx = np.arange(len(ids))

        def metric(sel: np.ndarray) -> dict[str, Any]:
            d: dict[str, Any] = {}
            if "bleu" in families:
                corpus, _ = bleu_from_stats([bstats[j] for j in sel])
                d.update({f"nlg.bleu_{k + 1}": v for k, v in enumerate(corpus)})
            for key in ("rouge_l", "cider_d"):
                if key in families:
                    d[f"nlg.{key}"] = float(np.mean([per[j][key] for j in sel]))
            c = clinical_efficacy([hyp_labels[j] for j in sel], [ref_labels[j] for j in sel],
                                  with_provenance=False, **ce_kwargs)
            for avg in ("micro", "macro"):
                for key, v in c[avg].items():
                    d[f"clinical_efficacy.{avg}.{key}"] = math.nan if v is None else v
            return d

        _add_ci(out, metric, (idx,), bootstrap, seed, _groups(ref, ids, group_by, ref_path))
        out["provenance"]["ci_note"] = ("BLEU exact per resample; ROUGE-L exact; CIDEr-D with full-corpus "
                                        "document frequencies; METEOR: no interval (corpus statistics not exposed)")
    return out


def score_vqa(pred_path: Path, ref_path: Path, *, bootstrap: int = 0, seed: int = 0,
              group_by: str | None = None) -> dict[str, Any]:
    """Closed/open VQA metrics, by answer and question type."""
    from medmm.metrics.vqa import vqa_metrics

    pred, ref = read_records(pred_path, "prediction"), read_records(ref_path, "reference")
    ids = match_ids(pred, ref, pred_path, ref_path)
    p = [_text(pred[i]["prediction"], pred_path, i, "prediction") for i in ids]
    r = [_text(ref[i]["reference"], ref_path, i, "reference") for i in ids]
    empty = [i for i, x in zip(ids, r) if not x.strip()]
    if empty:
        raise BadInputError(ref_path, f"{len(empty)} references are empty, e.g. {empty[:3]}")
    at = [ref[i].get("answer_type") for i in ids]
    qt = [ref[i].get("question_type") for i in ids]
    has_qt = any(q is not None for q in qt)
    out = vqa_metrics(p, r, answer_types=at, question_types=qt if has_qt else None)
    out["task"] = "vqa"
    if bootstrap:
        def metric(pp: list, rr: list, aa: list) -> dict[str, Any]:
            m = vqa_metrics(pp, rr, answer_types=aa, with_provenance=False)
            return {k: (math.nan if v is None else v) for k, v in m.items()
                    if k in ("overall_accuracy", "closed_accuracy", "open_exact_match", "open_token_f1",
                             "open_bleu1", "open_bleu4")}
        _add_ci(out, metric, (p, r, at), bootstrap, seed, _groups(ref, ids, group_by, ref_path))
    return out


def score_classification(pred_path: Path, ref_path: Path, *, bootstrap: int = 0, seed: int = 0,
                         group_by: str | None = None, kind: str | None = None, threshold: float = 0.5,
                         labels: list[str] | None = None) -> dict[str, Any]:
    """Binary / multi-class / multi-label metrics from scores."""
    from medmm.metrics.classification import classification_metrics

    pred, ref = read_records(pred_path, "prediction"), read_records(ref_path, "reference")
    ids = match_ids(pred, ref, pred_path, ref_path)
    try:
        scores = np.asarray([pred[i]["prediction"] for i in ids], dtype=float)
    except (TypeError, ValueError) as exc:
        raise BadInputError(pred_path, f"predictions must be numbers or equal-length lists of numbers: {exc}") from exc
    try:
        truth = np.asarray([[np.nan if v is None else v for v in ref[i]["reference"]]
                            if isinstance(ref[i]["reference"], list) else ref[i]["reference"] for i in ids],
                           dtype=float)
    except (TypeError, ValueError) as exc:
        raise BadInputError(ref_path, f"references must be labels or equal-length lists of 0/1/null: {exc}") from exc
    if kind is None:
        kind = "binary" if scores.ndim == 1 else ("multilabel" if truth.ndim == 2 else "multiclass")
    try:
        out = classification_metrics(truth, scores, kind, threshold=threshold, labels=labels)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadInputError(pred_path, str(exc)) from exc
    out["kind"] = out["task"]
    out["task"] = "classification"
    if bootstrap:
        keys = ("auroc", "auprc", "f1", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ece",
                "f1_macro", "f1_micro", "auroc_macro_ovr", "auroc_macro", "auroc_micro", "auprc_macro",
                "auprc_micro", "sensitivity_macro", "specificity_macro", "balanced_accuracy_macro")

        def metric(t: np.ndarray, s: np.ndarray) -> dict[str, Any]:
            m = classification_metrics(t, s, kind, threshold=threshold, labels=labels, with_provenance=False)  # type: ignore[arg-type]
            return {k: (math.nan if m[k] is None else m[k]) for k in keys if k in m}
        _add_ci(out, metric, (truth, scores), bootstrap, seed, _groups(ref, ids, group_by, ref_path))
    return out


def _read_mask(path: Any, base: Path, jsonl: Path, rid: str) -> np.ndarray:
    from medmm.data.io import read_image

    if not isinstance(path, str) or not path.strip():
        raise BadInputError(jsonl, f"id {rid!r}: mask must be a file path")
    p = Path(path)
    arr = read_image(p if p.is_absolute() else base / p)
    if arr.ndim == 3:  # an RGB(A) export of a grey mask: channels must agree
        if not all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, min(arr.shape[-1], 3))):
            raise BadInputError(p, "colour mask: save masks as single-channel label maps")
        arr = arr[..., 0]
    return arr


def score_segmentation(pred_path: Path, ref_path: Path, *, bootstrap: int = 0, seed: int = 0,
                       group_by: str | None = None, classes: list[int] | None = None,
                       spacing: list[float] | None = None) -> dict[str, Any]:
    """Dice / IoU / HD95 per class from mask files (binary: nonzero = foreground, unless ``classes``)."""
    from medmm.metrics.segmentation import SegmentationMetric, segmentation_metrics

    pred, ref = read_records(pred_path, "prediction"), read_records(ref_path, "reference")
    ids = match_ids(pred, ref, pred_path, ref_path)
    preds, refs = [], []
    for i in ids:
        pm = _read_mask(pred[i]["prediction"], pred_path.parent, pred_path, i)
        rm = _read_mask(ref[i]["reference"], ref_path.parent, ref_path, i)
        if pm.shape != rm.shape:
            raise BadInputError(pred_path, f"id {i!r}: prediction mask {pm.shape} and reference {rm.shape} differ in size")
        if classes is None:
            pm, rm = (pm != 0).astype(np.uint8), (rm != 0).astype(np.uint8)
        preds.append(pm)
        refs.append(rm)
    cls = classes or [1]
    names = None if classes else ["foreground"]
    out = segmentation_metrics(preds, refs, cls, names=names, spacing=spacing)
    out["task"] = "segmentation"
    if bootstrap:
        # per-image scores are computed once; resampling averages them
        per = SegmentationMetric(cls, names, spacing)
        for p, r in zip(preds, refs):
            per.update(p, r)
        rows = per.per_image

        def metric(sel: np.ndarray) -> dict[str, Any]:
            d: dict[str, Any] = {}
            for name in rows[0]:
                for key in ("dice", "iou", "hd95"):
                    vals = [rows[j][name][key] for j in sel if rows[j][name][key] is not None]
                    d[f"{name}.{key}"] = float(np.mean(vals)) if vals else math.nan
            return d
        _add_ci(out, metric, (np.arange(len(ids)),), bootstrap, seed, _groups(ref, ids, group_by, ref_path))
    return out


def score_retrieval(pred_path: Path, ref_path: Path | None, *, bootstrap: int = 0, seed: int = 0,
                    group_by: str | None = None) -> dict[str, Any]:
    """R@K / MRR / median rank both ways from a similarity matrix or paired embeddings."""
    from medmm.metrics.retrieval import cosine_similarity, rank_metrics, ranks, retrieval_metrics

    row_name, col_name = "image", "text"
    try:
        loaded = np.load(pred_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadInputError(pred_path, f"not a readable .npy/.npz file: {exc}") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        names = list(loaded.files)
        if len(names) != 2:
            raise BadInputError(pred_path, f".npz must hold exactly two embedding arrays, found {names}")
        row_name, col_name = names
        try:
            sim = cosine_similarity(loaded[row_name], loaded[col_name])
        except ValueError as exc:
            raise BadInputError(pred_path, str(exc)) from exc
    else:
        sim = np.asarray(loaded, dtype=np.float64)
    relevant = None
    group_ids = None
    if ref_path is not None:
        if ref_path.suffix == ".npy":
            relevant = np.load(ref_path, allow_pickle=False).astype(bool)
        else:
            from medmm.data.io import read_jsonl

            recs = read_jsonl(ref_path)
            if len(recs) != sim.shape[0]:
                raise BadInputError(ref_path, f"{len(recs)} records for a matrix with {sim.shape[0]} rows")
            if group_by:
                missing = [k for k, r in enumerate(recs) if r.get(group_by) in (None, "")]
                if missing:
                    raise BadInputError(ref_path, f"rows {missing[:3]} have no {group_by!r}")
                group_ids = [str(r[group_by]) for r in recs]
    elif group_by:
        raise BadInputError(pred_path, "group_by needs a reference .jsonl with one record per matrix row")
    try:
        out = retrieval_metrics(sim, relevant, row_name=row_name, col_name=col_name)
    except ValueError as exc:
        raise BadInputError(pred_path, str(exc)) from exc
    out["task"] = "retrieval"
    if bootstrap:
        # ranks against the full gallery are computed once; queries are resampled
        if relevant is not None and relevant.shape[0] != relevant.shape[1]:
            raise BadInputError(ref_path, "bootstrap needs a square matrix (queries both ways are paired)")
        r_fwd, r_bwd = ranks(sim, relevant), ranks(sim.T, None if relevant is None else relevant.T)

        def metric(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
            return {f"{row_name}_to_{col_name}": rank_metrics(a), f"{col_name}_to_{row_name}": rank_metrics(b)}
        _add_ci(out, metric, (r_fwd, r_bwd), bootstrap, seed, group_ids)
        out["provenance"]["ci_note"] = "queries resampled; ranks against the full gallery"
    return out


def score_files(task: str, pred: str | Path, ref: str | Path | None, **options: Any) -> dict[str, Any]:
    """Dispatch to the task's scorer; see the module docstring for formats and options."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    pred_path = Path(pred)
    ref_path = Path(ref) if ref is not None else None
    if ref_path is None and task != "retrieval":
        raise BadInputError(pred_path, f"--ref is required for task {task}")
    fn = {"report": score_report, "vqa": score_vqa, "classification": score_classification,
          "segmentation": score_segmentation, "retrieval": score_retrieval}[task]
    out = fn(pred_path, ref_path, **options)
    out["provenance"]["files"] = {"prediction": str(pred_path), "reference": str(ref_path) if ref_path else None}
    return out
