"""`evaluate` and `predict`: a trained run applied to a split of any dataset root. `evaluate`
also scores the records and says under which protocol (selection, training overlap, floors)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from medmm.data.schema import Sample
from medmm.engine import rundir as rd
from medmm.engine.config import RunConfig
from medmm.engine.eval_split import RunSplits, TrainingDataWarning, eval_samples, samples_for
from medmm.engine.inference import restoring_torch_state, run_inference, set_threads
from medmm.engine.loading import load_run
from medmm.engine.provenance import pretrained_sources, provenance_record, skip_list
from medmm.engine.task import Task
from medmm.errors import MedmmError


def _open_run(run_dir: str | Path, model_overrides: list[str] | None) -> tuple[RunConfig, Task]:
    """The trained run (`load_run`), with torch's threads set as the run asks."""
    cfg, task = load_run(run_dir, model_overrides)
    set_threads(cfg)
    return cfg, task


@restoring_torch_state
def evaluate(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    dataset: str | None = None,
    split: str = "test",
    out: str | Path | None = None,
    label_map: str | None = None,
    model_overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Score a trained run on exactly the records of `split` (no re-splitting of a given root).

    `data_root=None` scores the run's own data: `split` then names a part of the run's split as
    `train` built it ("val", "test" of a grouped split), so a run's held-out part is evaluable
    by name. `data_root` may also be any folder in the dataset's layout, e.g. one holding only
    the official test split. Scoring samples the run trained on warns (TrainingDataWarning)
    and says so in the result ("warning", provenance "n_trained_on").
    Returns {"metrics": ..., "provenance": ...}; also written to `out` if given.
    External validation: when `dataset` differs from the training dataset (or `label_map`
    names a mapping), the task's `prepare_external` maps its label space onto the other
    dataset's; provenance then holds "external": true and the mapping used.
    `model_overrides`: see `load_run` (recorded in the provenance).
    """
    from medmm.engine.selection import apply_selection_names

    cfg, task = _open_run(run_dir, model_overrides)
    run_splits = RunSplits(cfg)  # loaded once, for the samples and for the protocol
    samples, load_skipped, name, root, extras = eval_samples(cfg, data_root, dataset, split, run_splits)
    external = name != cfg.data.dataset or label_map is not None
    mapping = task.prepare_external(name, label_map) if external else None
    records, skipped = run_inference(task, samples, cfg)
    metrics = task.compute_metrics(records) if records else {}
    result: dict[str, Any] = {
        "metrics": metrics,
        **_evaluation_protocol(task, cfg, run_splits, Path(run_dir), name, split, samples, records, external),
        "provenance": provenance_record(
            cfg, name, str(root.resolve()), split, len(records), skip_list(load_skipped, skipped), Path(run_dir).resolve()
        ),
    }
    apply_selection_names(result)  # evaluated samples the run selected with: every number `selection_*`
    warning = extras.pop("warning", None)
    result["provenance"].update(extras)
    if warning:
        result["warning"] = warning
        warnings.warn(f"{run_dir}: {warning}", TrainingDataWarning, stacklevel=2)
    result["provenance"]["external"] = external
    result["provenance"]["pretrained"] = pretrained_sources(task)
    if model_overrides:
        result["provenance"]["model_overrides"] = list(model_overrides)
    result["provenance"]["training_dataset"] = cfg.data.dataset
    if mapping is not None:
        result["provenance"]["label_map"] = mapping
    if out is not None:
        rd.write_json(out, result)
    return result


def _evaluation_protocol(task: Task, cfg: RunConfig, run_splits: RunSplits, run_dir: Path, dataset: str, split: str,
                         samples: list[Sample], records: list[dict[str, Any]], external: bool) -> dict[str, Any]:
    """`protocol` and `floors` of an evaluation: the run's own splits (rebuilt from its config, same
    seed) fit the floors on their training part and count how many evaluated samples the run
    trained on or selected with (an evaluation of its validation samples is a selection number)."""
    from medmm.engine.protocol import floors_record, protocol_record, selection_split_of

    chosen = (run_dir / rd.CHECKPOINTS / rd.BEST_CKPT).exists()
    train_samples, unavailable, overlap, has_val = None, None, {"training": 0, "selection": 0}, chosen
    try:
        by_role = run_splits.get()
    except (MedmmError, OSError) as exc:
        unavailable = f"the run's training data could not be loaded ({cfg.data.root}): {exc}"
    else:
        train_samples = by_role["train"].samples
        val = by_role.get("val")
        has_val = bool(val is not None and val.samples)
        if not external:
            ids = {s.id for s in samples}
            overlap["training"] = sum(s.id in ids for s in train_samples)
            overlap["selection"] = sum(s.id in ids for s in val.samples) if has_val else 0
    selection = selection_split_of(task, has_val, chosen)
    is_selection = selection is not None and overlap["selection"] > 0
    protocol = protocol_record(task, cfg, reported_split=f"{dataset}:{split}", selection_split=selection,
                               checkpoint_chosen=chosen, reported_is_selection=is_selection,
                               extra={"evaluated_samples_in_run_training_split": overlap["training"],
                                      "evaluated_samples_in_run_selection_split": overlap["selection"]})
    return {"protocol": protocol, "floors": floors_record(task, train_samples, samples, records, unavailable)}


@restoring_torch_state
def predict(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    dataset: str | None = None,
    split: str = "test",
    out: str | Path | None = None,
    model_overrides: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Predictions (predict_step records, one per sample with its id): without `data_root`, a
    part of the run's own split by name, rebuilt as `evaluate` rebuilds it (e.g. a grouped run's
    "test"; warns, TrainingDataWarning, on samples the run trained on); with a root, exactly the
    records of that split as published (nothing else is loaded: the root may be large).

    Written as JSON lines to `out` if given; bad samples are skipped and logged.
    `model_overrides`: see `load_run` (e.g. decoding options).
    """
    cfg, task = _open_run(run_dir, model_overrides)
    if data_root is None:
        samples, _, _, _, extras = eval_samples(cfg, None, dataset, split)
        if extras.get("warning"):
            warnings.warn(f"{run_dir}: {extras['warning']}", TrainingDataWarning, stacklevel=2)
    else:
        samples, _, name = samples_for(cfg, data_root, dataset, split)
        if not samples:
            raise MedmmError(f"{data_root}: no samples in split {split!r} of dataset {name!r}; "
                             "a part of the run's own split (e.g. a grouped run's test) is read without --data")
    records, _ = run_inference(task, samples, cfg, with_references=False)
    if out is not None:
        rd.write_jsonl(out, records)
    return records
