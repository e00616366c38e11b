"""The records a run writes beside its numbers: where the samples came from, which were skipped,
which weights scored them, and the task state a trained run is reloaded from."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medmm.data.schema import Sample
from medmm.engine import rundir as rd
from medmm.engine.config import RunConfig
from medmm.engine.task import Task
from medmm.errors import BadInputError


def skip_list(load: list[BadInputError], runtime: dict[str, str]) -> list[str]:
    """One line per skipped record of one split: load-time errors, then samples dropped while
    reading (keyed by sample id, so an epoch that meets a sample twice counts it once)."""
    return [str(e) for e in load] + [f"{sid}: {msg}" for sid, msg in runtime.items()]


def provenance_record(
    cfg: RunConfig,
    dataset: str,
    root: str,
    split: str,
    n: int,
    skipped: list[str],
    run_dir: Path | None,
    skipped_before_split: list[BadInputError] | None = None,
) -> dict[str, Any]:
    """The `provenance` of a metrics file: task, data, counts, skipped records, seed, time and the
    sha256 of the run's weights (when `run_dir` holds them)."""
    prov: dict[str, Any] = {
        "task": cfg.task,
        "dataset": dataset,
        "root": str(root),
        "split": split,
        "n_samples": n,
        "n_skipped": len(skipped),  # bad records of this split only, one per record
        "skipped": skipped[:50],
        "seed": cfg.seed,
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if skipped_before_split:
        # Grouped split: bad records of the pooled source splits, dropped before splitting.
        prov["n_skipped_before_split"] = len(skipped_before_split)
        prov["skipped_before_split"] = [str(e) for e in skipped_before_split[:50]]
    if run_dir is not None:
        prov["run_dir"] = str(run_dir)
        w = run_dir / rd.WEIGHTS
        if w.exists():
            prov["weights_sha256"] = rd.sha256_file(w)
    return prov


def pretrained_sources(task: Task) -> list[dict[str, Any]]:
    """Hugging Face models inside the task (source, folder, weights sha256); see hf_loading."""
    from medmm.models.encoders.hf_loading import pretrained_sources as sources

    return sources(task)


def task_state_record(task: Task, cfg: RunConfig, train_samples: list[Sample], weights_sha256: str | None) -> dict[str, Any]:
    """task_state.json: the task's fitted state, its weights file and checksum, the training data's licences."""
    licences = sorted({str(s.meta["licence"]) for s in train_samples if s.meta.get("licence")})
    return {
        "task": cfg.task,
        "state": task.state(),
        "weights": rd.WEIGHTS,
        "sha256": weights_sha256,
        "dataset": cfg.data.dataset,
        "training_data_licences": licences,
        "precision": cfg.trainer.precision,
    }
