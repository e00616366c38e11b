"""The `protocol` and `floors` records every metrics file carries (docs/metrics.md).

`protocol` says which split chose the model (epoch, thresholds, settings) and which split the
numbers come from, which inputs came from annotations a deployed model would not have, whether
the model was trained or zero-shot, and how each metric is defined. Every number of a file reported
on the selection split (the checkpoint's epoch and e.g. decision thresholds were chosen on it) is
renamed ``selection_<name>`` there (`medmm.engine.selection`), so it is never read as a result.

`floors` holds the task's trivial baselines on the same samples, each tested against the model
(`Task.floors`, `medmm.metrics.floors`). The engine asks the task through its hooks and names
no task.
"""

from __future__ import annotations

import logging
from typing import Any

from medmm.data.schema import Sample
from medmm.engine.config import RunConfig
from medmm.engine.selection import SELECTION_PREFIX
from medmm.engine.task import Task

log = logging.getLogger("medmm.engine")

_TASK_PROTOCOL_KEYS = ("metric_definitions", "oracle_inputs", "fitted_on_validation", "selection_metrics")


def task_protocol(task: Task) -> dict[str, Any]:
    """`Task.protocol()` with every key present (a plugin task may return only some)."""
    out = {"metric_definitions": {}, "oracle_inputs": [], "fitted_on_validation": [], "selection_metrics": []}
    out.update(task.protocol() or {})
    return out


def selection_split_of(task: Task, has_validation: bool, checkpoint_chosen: bool) -> str | None:
    """"val" when validation chose the checkpoint or fitted task state (`calibrate`), else None."""
    if checkpoint_chosen or (has_validation and task_protocol(task)["fitted_on_validation"]):
        return "val"
    return None


def protocol_record(task: Task, cfg: RunConfig, *, reported_split: str, selection_split: str | None,
                    checkpoint_chosen: bool, reported_is_selection: bool,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metrics file's `protocol` (see the module docstring)."""
    tp = task_protocol(task)
    tc = cfg.trainer
    chosen = []
    if checkpoint_chosen:
        chosen.append(f"checkpoint (epoch) with the best {tc.monitor} ({tc.resolved_monitor_mode()})")
    if selection_split is not None:
        chosen.extend(tp["fitted_on_validation"])
    if selection_split is None:
        chosen.append("nothing: no validation split; the last weights are the model")
    zero_shot = (tc.max_epochs == 0) or (tc.max_steps == 0)
    record: dict[str, Any] = {
        "selection_split": selection_split,
        "selected_on_selection_split": chosen,
        "reported_split": reported_split,
        "reported_is_selection_split": reported_is_selection,
        "oracle_inputs": list(dict.fromkeys([*type(task).oracle_inputs(task.config), *tp["oracle_inputs"]])),
        "training": "zero-shot" if zero_shot else "trained",
        "metric_definitions": dict(tp["metric_definitions"]),
        "selection_metrics_renamed": [f"{SELECTION_PREFIX}{k}" for k in tp["selection_metrics"]] if reported_is_selection else [],
        "floors_fit_on": "the run's training split only",
    }
    # What else the task says the numbers depend on (a VLM's prompt and decoding, VQA routing), never
    # replacing the keys above.
    record.update({k: v for k, v in tp.items() if k not in _TASK_PROTOCOL_KEYS and k not in record})
    record.update(extra or {})
    return record


def floors_record(task: Task, train_samples: list[Sample] | None, samples: list[Sample],
                  records: list[dict[str, Any]], unavailable: str | None = None) -> dict[str, Any]:
    """The metrics file's `floors`; {"skipped": reason} when they cannot be computed (no training
    samples reachable, no records), {"error": message} when a floor failed (logged): a finished
    run is never lost to a floor, and a missing floor is never silent."""
    if unavailable is not None:
        return {"skipped": unavailable}
    if not records:
        return {"skipped": "no records were scored"}
    if not train_samples:
        return {"skipped": "no training samples to fit the floors on"}
    try:
        return task.floors(train_samples, samples, records)
    except Exception as exc:  # noqa: BLE001 - recorded in the file and the log, never dropped
        log.warning("floors failed: %s: %s", type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
