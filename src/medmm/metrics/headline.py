"""A task's headline metric, and the per-unit scores that let tools resample it.

A task class declares the number it is judged by::

    headline = Headline("val/auroc_macro_ovr", "max", diagnosis_units)

`metric` is the logged name ("val/<key of compute_metrics>", as `trainer.monitor` spells it),
`mode` whether higher ("max") or lower ("min") is better. `units(records, key)` turns a split's
evaluation records into `Units`: one row per resampling unit (a classified sample, an answered
question, a retrieval query), the system-dependent inputs (`predictions`) apart from the shared
ones (`references`), and the function computing the headline metrics (including `key`) from
them. With it, `medmm.ablation` compares variants of any task: bootstrap CIs over groups, paired
bootstrap and approximate-randomisation tests (swapping two systems' predictions per unit), and
seed ensembles (predictions averaged over seeds). Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from medmm.errors import MedmmError


@dataclass(frozen=True)
class Units:
    """Per-unit inputs of a headline metric function, aligned by `ids`.

    fn(*predictions, *references) -> {metric key: value}; keys as in the task's metrics file,
    nested levels joined by "/" ("image_to_text/mrr").
    """

    ids: list[str]
    groups: list[str]  # resampling groups (patient, image): a group is drawn whole
    predictions: tuple[np.ndarray, ...]  # per system: averaged over seeds, swapped by randomisation
    references: tuple[np.ndarray, ...]  # shared by every system scored on the same units
    fn: Callable[..., dict[str, float]]

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not n:
            raise MedmmError("no units to score (no labelled records?)")
        bad = [len(a) for a in (*self.predictions, *self.references) if len(a) != n] + (
            [len(self.groups)] if len(self.groups) != n else [])
        if bad:
            raise MedmmError(f"units: {n} ids but arrays/groups of lengths {bad}")

    def scores(self) -> dict[str, float]:
        """The metrics of these units."""
        return self.fn(*self.predictions, *self.references)

    def same_units(self, other: Units) -> bool:
        """Whether `other` scores the same units with the same references (comparable systems)."""
        return (self.ids == other.ids and len(self.references) == len(other.references)
                and all(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
                        for a, b in zip(self.references, other.references, strict=True)))


def mean_units(runs: Sequence[Units]) -> Units:
    """The seed ensemble of several runs on the same units: predictions averaged per unit
    (class probabilities, correctness, ranks); ids, groups, references and fn of the first."""
    first = runs[0]
    for other in runs[1:]:
        if not first.same_units(other):
            raise MedmmError("runs to average score different units or references; the split must be fixed")
    preds = tuple(np.mean([r.predictions[k] for r in runs], axis=0) for k in range(len(first.predictions)))
    return Units(first.ids, first.groups, preds, first.references, first.fn)


class Headline(NamedTuple):
    """What a task is judged by: (logged metric name, "max" | "min", records -> Units or None)."""

    metric: str
    mode: str
    units: Callable[[list[dict[str, Any]], str], Units] | None = None

    @property
    def key(self) -> str:
        """The metric's key in compute_metrics' output (the logged name without "val/")."""
        return self.metric.removeprefix("val/")
