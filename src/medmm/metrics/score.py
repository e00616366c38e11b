"""Score prediction files against reference files: the library behind ``medmm score``.

Files are UTF-8 JSON lines, one record per sample, matched by ``"id"`` (a task may read other
formats, e.g. retrieval's similarity matrices). Each task declares its file scorer, a torch-free
`FileScorer`, in a module of its own package (its ``Task.file_scorer`` hook returns it) and
registers it here under the engine's task name; ``medmm score`` finds it without importing the
task (nor torch) through the ``medmm.scorers`` entry points (pyproject.toml; name = the task's
name, value = ``module:OBJECT``). This module names no task: it reads, matches, resamples and
compares. A scorer may declare older names as deprecated aliases (accepted with a warning).

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
from medmm.registry import Registry


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


def group_ids(ref: dict[str, dict[str, Any]], ids: list[str], group_by: str | None, path: Path) -> list[str] | None:
    """The resampling group of each id (reference field ``group_by``), or None without one."""
    if not group_by:
        return None
    missing = [i for i in ids if ref[i].get(group_by) in (None, "")]
    if missing:
        raise BadInputError(path, f"{len(missing)} records have no {group_by!r} to group by, e.g. {missing[:3]}")
    return [str(ref[i][group_by]) for i in ids]


def require_text(value: Any, path: Path, rid: str, what: str) -> str:
    """``value`` when it is a string, else a BadInputError naming the file and id."""
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


def as_float(v: Any) -> float:
    """A metric value as a float, NaN where it is undefined (None)."""
    return math.nan if v is None else float(v)


# ----------------------------------------------------------------------------- the scorer registry
@dataclass(frozen=True)
class FileScorer:
    """What ``medmm score --task NAME`` runs: ``prepare(pred_path, ref_path, group_by=..., **options)``.

    options: the keyword options the scorer takes besides ``group_by`` (the CLI passes only
    these). needs_ref: whether a reference file is required. aliases: older names of the task
    that still select this scorer, with a deprecation warning. setup: optional one-time work
    before scoring (e.g. building a cache) that `medmm score` runs first, so that it can say what
    it is doing; scoring works without it.
    """

    prepare: Callable[..., Prepared]
    options: tuple[str, ...] = ()
    needs_ref: bool = True
    aliases: tuple[str, ...] = ()
    setup: Callable[[], None] | None = None


def _register_plugin(name: str, scorer: Any) -> None:
    """Register a `medmm.scorers` entry point's object that its module did not register itself."""
    if not isinstance(scorer, FileScorer):
        raise TypeError(f"is a {type(scorer).__name__}, not a FileScorer")
    register_scorer(name, scorer)


# Keyed by the task names of the engine's task registry (a test checks they match); torch-free,
# so `medmm score` scores any model's output without importing torch. Installed `medmm.scorers`
# entry points are loaded by the registry on a miss and before listing.
ENTRY_POINT_GROUP = "medmm.scorers"
SCORERS: Registry[FileScorer] = Registry("file scorer", entry_points=ENTRY_POINT_GROUP,
                                         register_entry_point=_register_plugin)
# Deprecated name -> the task's name, from the registered scorers' `aliases`.
DEPRECATED_ALIASES: dict[str, str] = {}


def register_scorer(task: str, scorer: FileScorer) -> FileScorer:
    """Register the file scorer of the task registered in the engine as `task`; returns it."""
    # `registered`, not `in`: a lookup miss would load the entry points while one is importing
    taken = [n for n in (task, *scorer.aliases) if SCORERS.registered(n) or n in DEPRECATED_ALIASES]
    if taken:
        raise ValueError(f"file scorer name(s) {taken} registered twice")
    SCORERS.register(task, scorer, aliases=scorer.aliases)
    DEPRECATED_ALIASES.update(dict.fromkeys(scorer.aliases, task))
    return scorer


def _canonical(task: str) -> str:
    """The task's current name (`task` itself when unknown), loading the scorer plug-ins on a miss."""
    if not SCORERS.registered(task) and task not in DEPRECATED_ALIASES:
        SCORERS.load_entry_points()
    return DEPRECATED_ALIASES.get(task, task)


def known_scorers() -> list[str]:
    """Names of the tasks with a file scorer (after loading the scorer plug-ins)."""
    return SCORERS.names()


def deprecation_message(task: str) -> str | None:
    """The message for a deprecated task name (None for a current one)."""
    current = _canonical(task)
    if current != task:
        return f"task name {task!r} is deprecated; use {current!r} (the engine's name for it)"
    return None


def resolve_scorer(task: str) -> tuple[str, FileScorer]:
    """(the task's current name, its file scorer); a deprecated name warns, an unknown one raises."""
    message = deprecation_message(task)
    if message:
        warnings.warn(message, DeprecationWarning, stacklevel=4)  # the caller of score_files
        task = DEPRECATED_ALIASES[task]
    if task not in SCORERS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(known_scorers()) or 'none'} (file scorers are "
                         f"plug-ins: installed `{ENTRY_POINT_GROUP}` entry points, or call medmm.plugins.load_scorers() "
                         "for the built-in ones)")
    return task, SCORERS[task]


def _prepare(task: str, pred: str | Path, ref: str | Path | None, options: dict[str, Any]) -> Prepared:
    task, scorer = resolve_scorer(task)
    pred_path = Path(pred)
    ref_path = Path(ref) if ref is not None else None
    if ref_path is None and scorer.needs_ref:
        raise BadInputError(pred_path, f"--ref is required for task {task}")
    prep = scorer.prepare(pred_path, ref_path, **options)
    prep.result["task"] = task  # the engine's name, whatever name selected the scorer
    prep.result["provenance"]["files"] = {"prediction": str(pred_path), "reference": str(ref_path) if ref_path else None}
    return prep


def score_files(task: str, pred: str | Path, ref: str | Path | None, *, bootstrap: int = 0, seed: int = 0,
                **options: Any) -> dict[str, Any]:
    """Score one prediction file; with ``bootstrap`` > 0 add ``"ci"`` (95 % percentile intervals).

    The formats are the task's (its file scorer's module docstring); ``options`` are
    ``group_by`` and the options its `FileScorer` declares.
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
    task = a.result["task"]
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
