"""The task interface: what the one training engine needs from a task, and nothing more.

A task wraps its model and loss. The engine (Lightning underneath) calls these methods and
knows nothing task-specific: diagnosis, retrieval, report generation, VQA and segmentation
all train, evaluate and predict through the same loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medmm.data.schema import Sample
from medmm.errors import MedmmError


class Task(nn.Module):
    """Base class of every task.

    Subclasses implement:
      - `setup(train_samples)`: fit anything that depends on training data (label vocabulary,
        tokenizer, class weights) BEFORE training; its state must be saved by `state()`.
      - `collate(samples)`: CPU-side batching (reads images; runs in DataLoader workers). It
        must raise `BadInputError` for a bad sample; the engine's loader skips and counts it.
      - `training_step(batch)`: returns a dict with "loss" (and any other scalars to log).
      - `evaluation_step(batch)`: one record per sample, each a dict with at least "id",
        "prediction" and "reference" (JSON-serialisable), written to predictions.jsonl.
      - `compute_metrics(records)`: metrics dict from all records of a split.
      - `predict_step(batch)`: like evaluation_step, without needing references.

    Configuration: a subclass declares its `model:` config section as a nested dataclass
    ``Config`` and takes it in ``__init__(self, config: Config)`` (calling
    ``super().__init__(config)``). `from_config(dict)` checks the keys and types of that
    section (unknown key -> `medmm.engine.config.ConfigError`) and builds the task.
    """

    name: str = "task"

    @dataclass
    class Config:
        """The task's `model:` section. Subclasses replace it with their own dataclass."""

    def __init__(self, config: Any = None):
        super().__init__()
        self.config = config if config is not None else type(self).Config()

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None = None, where: str | None = None) -> Task:
        """Build the task from its `model:` config section (checked against `cls.Config`)."""
        from medmm.engine.config import build_dataclass

        return cls(build_dataclass(cls.Config, dict(cfg or {}), where, prefix="model."))

    def setup(self, train_samples: list[Sample]) -> None:
        """Fit data-dependent state (vocabularies, class weights). Default: nothing."""

    def state(self) -> dict[str, Any]:
        """JSON-serialisable, data-dependent state saved beside the weights (label order, ...)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state()` returned (before loading weights)."""

    def collate(self, samples: list[Sample]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def training_step(self, batch: Any) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def evaluation_step(self, batch: Any) -> list[dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError

    def compute_metrics(self, records: list[dict[str, Any]]) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def predict_step(self, batch: Any) -> list[dict[str, Any]]:
        """Default: evaluation_step (tasks whose predictions need no reference may override)."""
        return self.evaluation_step(batch)

    # Optional hooks (defaults do nothing; the engine calls them when a task overrides them).
    def training_samples(self, samples: list[Sample]) -> list[Sample]:
        """The training split's samples as the task trains on them (default: unchanged).

        Called once on the training role only, after the split and before `setup`, so extra
        examples derived from training samples (e.g. other wordings of a training question)
        never reach validation or test. Must depend on the config alone (a resumed run calls
        it again).
        """
        return samples

    def sample_weights(self, samples: list[Sample]) -> list[float] | None:
        """Per-sample training sampling weights (e.g. class-balanced), or None for uniform.

        Called once on the training split after `setup`; the engine then draws each epoch's
        samples with replacement in proportion to the weights (seeded by seed and epoch).
        """
        return None

    def random_generators(self) -> dict[str, torch.Generator]:
        """The task's own torch.Generators (e.g. for augmentation), by a stable name.

        The engine seeds each from the run seed and the name before training (so runs with
        different seeds draw different augmentations), and saves/restores their states in every
        checkpoint (so a resumed run continues the stream instead of replaying it). Default: none.
        """
        return {}

    def calibrate(self, val_records: list[dict[str, Any]]) -> bool:
        """Fit post-training state on the validation records of the best weights (e.g.
        decision thresholds). Return True when state changed (the engine then re-saves
        `state()` and re-scores). Default: nothing."""
        return False

    def prepare_external(self, dataset: str, label_map: str | None = None) -> dict[str, Any] | None:
        """Get ready to score records of another dataset/label space (external validation).

        Called by `medmm evaluate` when the evaluated dataset differs from the training one or
        a label map is named. Returns a JSON description of the mapping used (written into the
        metrics file) or None when no mapping is needed. Default: a named map is an error.
        """
        if label_map is not None:
            raise MedmmError(f"task {self.name!r} does not support label maps (got {label_map!r})")
        return None


_TASKS: dict[str, Callable[..., Task]] = {}


def register_task(name: str):
    """Decorator registering a Task subclass (constructed from its config section)."""

    def wrap(cls):
        if name in _TASKS:
            raise MedmmError(f"task {name!r} registered twice")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return wrap


def get_task_class(name: str):
    """The Task class registered as `name` (imports medmm.tasks to register them)."""
    import medmm.tasks  # noqa: F401  (registers the built-in tasks)

    if name not in _TASKS:
        raise MedmmError(f"unknown task {name!r}; known: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def list_tasks() -> list[str]:
    import medmm.tasks  # noqa: F401

    return sorted(_TASKS)
