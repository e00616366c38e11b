"""Score prediction files against reference files: the library behind ``medmm score``.

File formats (UTF-8 JSON lines, one record per sample, matched by ``"id"``):

Tasks are named as the engine names them (``medmm.engine`` task registry); the older names
``report`` and ``classification`` still work as deprecated aliases of ``report_generation`` and
``diagnosis``.

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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medmm.errors import BadInputError
from medmm.metrics import stats
from medmm.metrics.provenance import provenance


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


@dataclass
class Prepared:
    """One system's scored samples: the full result, per-sample items and their aggregate.

    ``aggregate(items)`` recomputes the headline metrics (a flat dict, NaN where undefined)
    from any subset or resample of ``items``; bootstrap CIs and paired tests are built on it.
    """

    ids: list[str]
    result: dict[str, Any]
    items: list[Any]
    aggregate: Callable[[list[Any]], dict[str, float]]
    groups: list[str] | None
    ci_note: str | None = None


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)


# ----------------------------------------------------------------------------- tasks
def prepare_report(pred_path: Path, ref_path: Path, *, group_by: str | None = None, observations: str = "14",
                   uncertain: str = "ignore", missing: str = "negative") -> Prepared:
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
    # Per-sample items for resampling. Corpus BLEU is recomputed from per-sample n-gram
    # statistics (exact); ROUGE-L is a mean of per-sample scores (exact); CIDEr-D keeps the
    # document frequencies of the full reference corpus. Corpus METEOR pools alignment
    # statistics that the nlg API does not expose, and the mean of per-sample METEOR is a
    # different number, so METEOR gets no interval and no test.
    gts = tokenize_corpus({i: refs[i] for i in ids})
    rs = tokenize_corpus({i: [hyps[i]] for i in ids})
    items = [{"bleu": bleu_stats(rs[i][0].split(), [r.split() for r in gts[i]]), "scores": res.samples[i],
              "hyp": hyp_labels[k], "ref": ref_labels[k]} for k, i in enumerate(ids)]

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
                d[f"clinical_efficacy.{avg}.{key}"] = _nan(v)
        return d

    note = ("BLEU exact per resample; ROUGE-L exact; CIDEr-D with full-corpus document frequencies; "
            "METEOR: no interval (corpus statistics not exposed)")
    return Prepared(ids, result, items, aggregate, _groups(ref, ids, group_by, ref_path), note)


_VQA_KEYS = ("overall_accuracy", "closed_accuracy", "open_exact_match", "open_token_f1", "open_bleu1", "open_bleu4")


def prepare_vqa(pred_path: Path, ref_path: Path, *, group_by: str | None = None) -> Prepared:
    """Closed/open VQA metrics, by answer and question type."""
    from medmm.metrics.vqa import _summary, score_item, vqa_metrics

    pred, ref = read_records(pred_path, "prediction"), read_records(ref_path, "reference")
    ids = match_ids(pred, ref, pred_path, ref_path)
    p = [_text(pred[i]["prediction"], pred_path, i, "prediction") for i in ids]
    r = [_text(ref[i]["reference"], ref_path, i, "reference") for i in ids]
    empty = [i for i, x in zip(ids, r, strict=True) if not x.strip()]
    if empty:
        raise BadInputError(ref_path, f"{len(empty)} references are empty, e.g. {empty[:3]}")
    at = [ref[i].get("answer_type") for i in ids]
    qt = [ref[i].get("question_type") for i in ids]
    result = vqa_metrics(p, r, answer_types=at, question_types=qt if any(q is not None for q in qt) else None)
    result["task"] = "vqa"
    items = [score_item(a, b, t) for a, b, t in zip(p, r, at, strict=True)]

    def aggregate(sel: list[Any]) -> dict[str, float]:
        m = _summary(sel)
        return {k: _nan(m[k]) for k in _VQA_KEYS}

    return Prepared(ids, result, items, aggregate, _groups(ref, ids, group_by, ref_path))


_CLS_KEYS = ("auroc", "auprc", "f1", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ece",
             "f1_macro", "f1_micro", "auroc_macro_ovr", "auroc_macro", "auroc_micro", "auprc_macro",
             "auprc_micro", "sensitivity_macro", "specificity_macro", "balanced_accuracy_macro")


def prepare_classification(pred_path: Path, ref_path: Path, *, group_by: str | None = None, kind: str | None = None,
                           threshold: float = 0.5, labels: list[str] | None = None) -> Prepared:
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
        result = classification_metrics(truth, scores, kind, threshold=threshold, labels=labels)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadInputError(pred_path, str(exc)) from exc
    result["kind"] = result["task"]
    result["task"] = "classification"
    items = list(zip(truth, scores, strict=True))

    def aggregate(sel: list[Any]) -> dict[str, float]:
        t = np.stack([x[0] for x in sel])
        s = np.stack([x[1] for x in sel])
        m = classification_metrics(t, s, kind, threshold=threshold, labels=labels, with_provenance=False)  # type: ignore[arg-type]
        return {k: _nan(m[k]) for k in _CLS_KEYS if k in m}

    return Prepared(ids, result, items, aggregate, _groups(ref, ids, group_by, ref_path))


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


def prepare_segmentation(pred_path: Path, ref_path: Path, *, group_by: str | None = None,
                         classes: list[int] | None = None, spacing: list[float] | None = None) -> Prepared:
    """Dice / IoU / HD95 per class from mask files (binary: nonzero = foreground, unless ``classes``)."""
    from medmm.metrics.segmentation import SegmentationMetric

    pred, ref = read_records(pred_path, "prediction"), read_records(ref_path, "reference")
    ids = match_ids(pred, ref, pred_path, ref_path)
    cls = classes or [1]
    names = None if classes else ["foreground"]
    metric = SegmentationMetric(cls, names, spacing)
    for i in ids:
        pm = _read_mask(pred[i]["prediction"], pred_path.parent, pred_path, i)
        rm = _read_mask(ref[i]["reference"], ref_path.parent, ref_path, i)
        if pm.shape != rm.shape:
            raise BadInputError(pred_path, f"id {i!r}: prediction mask {pm.shape} and reference {rm.shape} differ in size")
        if classes is None:
            pm, rm = (pm != 0).astype(np.uint8), (rm != 0).astype(np.uint8)
        metric.update(pm, rm)
    result = metric.compute()
    result["provenance"] = provenance(
        "segmentation",
        implementation="medmm.metrics.segmentation (numpy/scipy; HD95 as MONAI HausdorffDistanceMetric(percentile=95))",
        n_samples=len(ids),
        label_handling={"both_empty": "dice=iou=1, hd95=0",
                        "one_empty": "dice=iou=0, hd95 undefined (excluded from its mean, counted)",
                        "masks": "nonzero = foreground" if classes is None else f"label ids {cls}"},
        averaging="per class: mean over images; *_mean: mean over classes",
        spacing=list(spacing) if spacing is not None else "pixels")
    result["task"] = "segmentation"
    items = metric.per_image  # per-image scores, computed once

    def aggregate(sel: list[Any]) -> dict[str, float]:
        d: dict[str, float] = {}
        for name in sel[0]:
            for key in ("dice", "iou", "hd95"):
                vals = [row[name][key] for row in sel if row[name][key] is not None]
                d[f"{name}.{key}"] = float(np.mean(vals)) if vals else math.nan
        d["dice_mean"] = float(np.mean([d[f"{n}.dice"] for n in sel[0]]))
        return d

    return Prepared(ids, result, items, aggregate, _groups(ref, ids, group_by, ref_path))


def prepare_retrieval(pred_path: Path, ref_path: Path | None, *, group_by: str | None = None) -> Prepared:
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
    ids = [str(k) for k in range(sim.shape[0])] if sim.ndim == 2 else []
    if ref_path is not None:
        if ref_path.suffix == ".npy":
            relevant = np.load(ref_path, allow_pickle=False).astype(bool)
        else:
            from medmm.data.io import read_jsonl

            recs = read_jsonl(ref_path)
            if len(recs) != sim.shape[0]:
                raise BadInputError(ref_path, f"{len(recs)} records for a matrix with {sim.shape[0]} rows")
            ids = [str(r.get("id", k)) for k, r in enumerate(recs)]
            if group_by:
                missing = [k for k, r in enumerate(recs) if r.get(group_by) in (None, "")]
                if missing:
                    raise BadInputError(ref_path, f"rows {missing[:3]} have no {group_by!r}")
                group_ids = [str(r[group_by]) for r in recs]
    elif group_by:
        raise BadInputError(pred_path, "group_by needs a reference .jsonl with one record per matrix row")
    try:
        result = retrieval_metrics(sim, relevant, row_name=row_name, col_name=col_name)
    except ValueError as exc:
        raise BadInputError(pred_path, str(exc)) from exc
    result["task"] = "retrieval"
    items: list[Any] = []
    if relevant is None or relevant.shape[0] == relevant.shape[1]:
        # a query and its paired item are resampled together; ranks stay those of the full gallery
        items = list(zip(ranks(sim, relevant), ranks(sim.T, None if relevant is None else relevant.T), strict=False))

    def aggregate(sel: list[Any]) -> dict[str, float]:
        if not sel:
            raise BadInputError(ref_path, "resampling needs a square matrix (queries paired both ways)")
        a = rank_metrics(np.asarray([x[0] for x in sel]))
        b = rank_metrics(np.asarray([x[1] for x in sel]))
        return {**{f"{row_name}_to_{col_name}.{k}": v for k, v in a.items()},
                **{f"{col_name}_to_{row_name}.{k}": v for k, v in b.items()}}

    return Prepared(ids, result, items, aggregate, group_ids, "queries resampled; ranks against the full gallery")


# ----------------------------------------------------------------------------- the scorer registry
@dataclass(frozen=True)
class FileScorer:
    """What ``medmm score --task NAME`` runs: ``prepare(pred_path, ref_path, group_by=..., **options)``.

    options: the keyword options the scorer takes besides ``group_by`` (the CLI passes only
    these). needs_ref: whether a reference file is required.
    """

    prepare: Callable[..., Prepared]
    options: tuple[str, ...] = ()
    needs_ref: bool = True


# Keyed by the task names of the engine's task registry (a test checks they match); torch-free,
# so `medmm score` scores any model's output without importing torch.
SCORERS: dict[str, FileScorer] = {}
# Names used before the scorers took the engine's task names; accepted with a deprecation message.
DEPRECATED_ALIASES: dict[str, str] = {"report": "report_generation", "classification": "diagnosis"}


def register_scorer(task: str, scorer: FileScorer) -> None:
    """Register the file scorer of the task registered in the engine as `task`."""
    if task in SCORERS or task in DEPRECATED_ALIASES:
        raise ValueError(f"file scorer {task!r} registered twice")
    SCORERS[task] = scorer


register_scorer("report_generation", FileScorer(prepare_report, ("observations", "uncertain", "missing")))
register_scorer("vqa", FileScorer(prepare_vqa))
register_scorer("diagnosis", FileScorer(prepare_classification, ("kind", "threshold", "labels")))
register_scorer("segmentation", FileScorer(prepare_segmentation, ("classes", "spacing")))
register_scorer("retrieval", FileScorer(prepare_retrieval, needs_ref=False))
TASKS = tuple(SCORERS)


def deprecation_message(task: str) -> str | None:
    """The message for a deprecated task name (None for a current one)."""
    if task in DEPRECATED_ALIASES:
        return f"task name {task!r} is deprecated; use {DEPRECATED_ALIASES[task]!r} (the engine's name for it)"
    return None


def resolve_scorer(task: str) -> tuple[str, FileScorer]:
    """(the task's current name, its file scorer); a deprecated name warns, an unknown one raises."""
    message = deprecation_message(task)
    if message:
        warnings.warn(message, DeprecationWarning, stacklevel=4)  # the caller of score_files
        task = DEPRECATED_ALIASES[task]
    if task not in SCORERS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    return task, SCORERS[task]


def _prepare(task: str, pred: str | Path, ref: str | Path | None, options: dict[str, Any]) -> Prepared:
    task, scorer = resolve_scorer(task)
    pred_path = Path(pred)
    ref_path = Path(ref) if ref is not None else None
    if ref_path is None and scorer.needs_ref:
        raise BadInputError(pred_path, f"--ref is required for task {task}")
    prep = scorer.prepare(pred_path, ref_path, **options)
    prep.result["provenance"]["files"] = {"prediction": str(pred_path), "reference": str(ref_path) if ref_path else None}
    return prep


def score_files(task: str, pred: str | Path, ref: str | Path | None, *, bootstrap: int = 0, seed: int = 0,
                **options: Any) -> dict[str, Any]:
    """Score one prediction file; with ``bootstrap`` > 0 add ``"ci"`` (95 % percentile intervals).

    See the module docstring for the formats; ``options`` are the task's (group_by,
    observations/uncertain/missing, kind/threshold/labels, classes/spacing).
    """
    prep = _prepare(task, pred, ref, options)
    out = prep.result
    if bootstrap > 0:
        items = prep.items
        ci = stats.bootstrap_ci(lambda idx: prep.aggregate([items[j] for j in idx]), np.arange(len(items)),
                                n_resamples=bootstrap, seed=seed, groups=prep.groups)
        out["ci"] = {k: {"estimate": ci["estimate"][k], "low": ci["low"][k], "high": ci["high"][k],
                         "n_invalid": ci["n_invalid"][k]} for k in ci["estimate"]}
        out["provenance"].update(ci_method=ci["method"], seed=seed, ci_units=ci["n_units"])
        if prep.ci_note:
            out["provenance"]["ci_note"] = prep.ci_note
    return out


def compare_files(task: str, pred_a: str | Path, pred_b: str | Path, ref: str | Path | None, *,
                  n_resamples: int = 1000, seed: int = 0, **options: Any) -> dict[str, Any]:
    """Paired comparison of systems A and B on the same references, for every headline metric.

    For each metric: A, B, the difference A - B with its paired-bootstrap CI, and the paired
    bootstrap and approximate-randomisation p-values (:func:`medmm.metrics.stats.paired_test`).
    """
    a = _prepare(task, pred_a, ref, options)
    b = _prepare(task, pred_b, ref, options)
    task = DEPRECATED_ALIASES.get(task, task)
    if a.ids != b.ids:
        raise BadInputError(pred_b, f"ids or their order differ from {pred_a}")
    n = len(a.items)
    pool = a.items + b.items  # index j < n: system A's sample j; n + j: system B's
    # one aggregate call per system and resample serves every metric
    tests = stats.paired_tests(lambda idx: a.aggregate([pool[j] for j in idx]), np.arange(n), np.arange(n, 2 * n),
                               n_resamples=n_resamples, seed=seed, groups=a.groups)
    return {
        "task": task,
        "a": str(pred_a),
        "b": str(pred_b),
        "tests": tests,
        "provenance": provenance(
            f"{task} paired comparison", implementation="medmm.metrics.stats.paired_test over medmm.metrics.score",
            n_samples=n, seed=seed, label_handling=a.result["provenance"].get("label_handling"),
            tokenisation=a.result["provenance"].get("tokenisation"),
            ci_method=f"paired percentile bootstrap + approximate randomisation, {n_resamples} resamples of "
                      f"{'groups' if a.groups else 'samples'}",
            ci_note=a.ci_note, files={"a": str(pred_a), "b": str(pred_b), "reference": str(ref)}),
    }
