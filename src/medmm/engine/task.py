"""The task interface: what the one training engine needs from a task, and nothing more.

A task wraps its model and loss. The engine (Lightning underneath) calls these methods and
knows nothing task-specific: diagnosis, retrieval, report generation, VQA and segmentation
all train, evaluate and predict through the same loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from medmm.data.schema import Sample
from medmm.errors import MedmmError
from medmm.registry import Registry

if TYPE_CHECKING:
    from medmm.metrics.headline import Headline
    from medmm.metrics.score import FileScorer


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
    # What the task is judged by: Headline(logged metric, "max" | "min", records -> per-unit
    # scores) (`medmm.metrics.headline`); with per-unit scores, `medmm ablate` compares its variants.
    headline: Headline | None = None

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

    def predict_collate(self, samples: list[Sample]) -> Any:
        """Batching for `predict_step` (no references needed). Default: `collate`. A task whose
        `collate` needs references (e.g. reference masks) overrides it, so that new images can
        be predicted (`medmm predict`, `medmm serve`)."""
        return self.collate(samples)

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

    def floors(self, train_samples: list[Sample], samples: list[Sample], records: list[dict[str, Any]]) -> dict[str, Any]:
        """Trivial baselines of the task scored on `samples` (the split the model's `records` came
        from), fit on `train_samples` (the run's training split) only, each compared with the
        model, paired (`medmm.metrics.floors`). Written as the metrics file's top-level `floors`:
        name -> {"metrics", "model_minus_floor", ...} or {"skipped": reason}. Default: none."""
        return {}

    @classmethod
    def oracle_inputs(cls, config: Any) -> list[str]:
        """The inputs `config` (this task's `Config`) takes from annotations a deployed model would
        not have, e.g. routing VQA questions by their answer-type label. Shipped configs use none
        (tests/test_configs_valid.py). Default: none."""
        return []

    def protocol(self) -> dict[str, Any]:
        """The task's part of a metrics file's `protocol` record:

        - ``metric_definitions``: metric name -> how it is computed;
        - ``oracle_inputs``: more oracle inputs than `oracle_inputs(config)` names (rarely needed);
        - ``fitted_on_validation``: what `calibrate` fitted on the validation split (e.g. decision
          thresholds), and ``selection_metrics``: the metric keys that depend on it (on the split
          that chose the model every number is reported as ``selection_<key>``, these included).
        """
        return {"metric_definitions": {}, "oracle_inputs": [], "fitted_on_validation": [], "selection_metrics": []}

    def serving_inputs(self) -> dict[str, str]:
        """The request fields a served model reads: "image" and `Sample.text` keys -> description.

        Used by `medmm package` / `medmm serve` (model card, OpenAPI). Default: the image and the
        config's `text_field` or `text.field` (a name or a list), else any known text field.
        """
        from medmm.data.schema import TEXT_FIELDS

        fields = {"image": "one image: DICOM, PNG or JPEG"}
        named = getattr(self.config, "text_field", None) or getattr(getattr(self.config, "text", None), "field", None)
        names = [named] if isinstance(named, str) else list(named or [])
        for n in names or TEXT_FIELDS:
            fields[n] = "text" if names else "text (optional)"
        return fields

    def output_spec(self) -> dict[str, Any]:
        """Label names in output order, decision thresholds and the image preprocessing spec,
        for a model package. Default: read from `state()` keys ("classes"/"labels"/"answers",
        "thresholds"/"threshold", "input_spec"/"input" or image_size/mean/std)."""
        st = self.state()
        labels = next((st[k] for k in ("classes", "labels", "answers") if st.get(k)), None)
        thresholds = st.get("thresholds", st.get("threshold"))
        pre = st.get("input_spec") or st.get("input")
        if pre is None and "mean" in st:
            pre = {k: st.get(k) for k in ("image_size", "channels", "mean", "std")}
        return {"labels": labels, "thresholds": thresholds, "preprocessing": pre}

    # A task that scores an untrained pretrained model (`medmm evaluate --model NAME --task TASK`)
    # names the dataset it reads by default; None: no zero-shot evaluation.
    zero_shot_dataset: str | None = None

    @classmethod
    def zero_shot_section(cls, section: dict[str, Any], pretrained: str, dataset: str | None,
                          prompts: str | None = None) -> dict[str, Any]:
        """The `model:` section that scores `pretrained` (hub name or folder) untrained on `dataset`,
        made from `section` (a config's, or {}) for `medmm evaluate --model`; `prompts`: a prompt
        file the task reads (`--prompts`). Default: model.pretrained set, no adapters (model.lora
        null), and no prompt file."""
        if prompts is not None:
            raise MedmmError(f"task {cls.name!r} reads no --prompts file")
        return {**section, "pretrained": pretrained, "lora": None}

    def prepare_external(self, dataset: str, label_map: str | None = None) -> dict[str, Any] | None:
        """Get ready to score records of another dataset/label space (external validation).

        Called by `medmm evaluate` when the evaluated dataset differs from the training one or
        a label map is named. Returns a JSON description of the mapping used (written into the
        metrics file) or None when no mapping is needed. Default: a named map is an error.
        """
        if label_map is not None:
            raise MedmmError(f"task {self.name!r} does not support label maps (got {label_map!r})")
        return None


    # Plug-in hooks: what shared tools (interpret, reports, the CLI) ask of a task, so that none
    # of them names a task.
    def explainable(self, samples: list[Sample]) -> Any:
        """How `medmm explain` explains this task on `samples` (the task is in eval mode).

        Return a `medmm.interpret.explainable.Explainable` (the model as a classifier of
        images and text: heatmaps, token attributions, modality contributions), a
        `WordRegions` (word- or sentence-to-region maps), or None (default): no explainer.
        """
        return None

    @classmethod
    def file_scorer(cls) -> FileScorer | None:
        """What `medmm score --task NAME` runs on this task's exported prediction files: a
        torch-free `medmm.metrics.score.FileScorer` registered under the task's name in a module
        that imports no torch (and declared as a `medmm.scorers` entry point, so `medmm score`
        finds it without importing the task). Default: None (no file scorer)."""
        return None

    @classmethod
    def report_figures(cls, records: list[dict[str, Any]], out_dir: Path, split: str) -> list[str]:
        """Figures drawn from one split's prediction records for the run's report.html (e.g.
        segmentation overlays): PNGs written into `out_dir`; returns their file names. Called
        without the model. Default: none."""
        return []

    def instruction_records(self, samples: list[Sample]) -> list[dict[str, Any]]:
        """The samples as instruction (chat) data for generative vision-language models:
        ``{"id", "image": path | None, "messages": [{"role": "system" | "user" | "assistant",
        "content": str}, ...]}`` per sample, the image referenced by its file path and the
        assistant message the sample's reference (`medmm.tasks.chat`). Default: an error naming
        the task (it has no instruction form)."""
        raise MedmmError(f"task {self.name!r} does not turn its samples into instruction data "
                         "(no Task.instruction_records hook)")


# Tasks reach this registry as plug-ins: the engine imports no task. Each `medmm.tasks` entry
# point (pyproject.toml: `[project.entry-points."medmm.tasks"]`, name = the registered task name)
# is loaded on the first lookup that misses; `medmm.plugins.load()` (called by the CLI) also
# imports the built-in tasks directly, for an install whose entry-point metadata is stale.
ENTRY_POINT_GROUP = "medmm.tasks"
_TASKS: Registry[type[Task]] = Registry(
    "task", entry_points=ENTRY_POINT_GROUP,
    hint=f" (tasks are plug-ins: installed `{ENTRY_POINT_GROUP}` entry points, or call medmm.plugins.load() for the built-in ones)")


def register_task(name: str):
    """Decorator registering a Task subclass (constructed from its config section)."""

    def wrap(cls):
        _TASKS.register(name, cls)
        cls.name = name
        return cls

    return wrap


def load_task_entry_points() -> list[str]:
    """Import every installed `medmm.tasks` entry point not loaded yet; returns their names.

    An entry point whose name is not the name its class registers under is an error (a typo
    there would otherwise surface later as "unknown task").
    """
    return _TASKS.load_entry_points()


def get_task_class(name: str):
    """The Task class registered as `name` (loading the task plug-ins on a miss)."""
    return _TASKS[name]


def list_tasks() -> list[str]:
    """Names of every registered task (after loading the task plug-ins)."""
    return _TASKS.names()
