"""Typed run configs: dataclasses read from YAML, with dotted command-line overrides.

A run config has four parts::

    task: diagnosis            # a name registered with @register_task
    seed: 0
    data:    {...}             # DataConfig: which dataset, which splits
    trainer: {...}             # TrainerConfig: how to train (epochs, batch size, lr, devices)
    model:   {...}             # the task's own section, validated by `TaskClass.Config`

`load_config(path, ["trainer.max_epochs=3", "data.root=../shared/data/vqa_rad"])` reads the
file, applies the overrides (values parsed as YAML scalars), checks every key against the
dataclasses and raises `ConfigError` naming the key and the file for anything unknown or of the
wrong type. This module is torch-free; only `validate_model=True` imports the task (and torch).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from medmm.engine.config_fields import moved_key_problem
from medmm.errors import MedmmError


class ConfigError(MedmmError):
    """A config file (or override) has an unknown key or a value of the wrong type."""

    def __init__(self, where: str | Path | None, key: str, problem: str):
        self.where = str(where) if where is not None else None
        self.key = key
        self.problem = problem
        prefix = f"{self.where}: " if self.where else ""
        super().__init__(f"{prefix}{key}: {problem}")


@dataclass
class DataConfig:
    """Which dataset and which splits a run uses.

    Attributes:
        dataset: a name registered with `medmm.data.registry.register_dataset`.
        root: the dataset folder in its original layout. A relative path is resolved against
            the current directory when the config is loaded (shipped configs use
            ``../shared/data/<name>``, i.e. they are run from the repository root).
        split: "official" uses the dataset's published splits named by train/val/test_split;
            "grouped" pools the splits named in `source_splits` and re-splits them with
            `medmm.data.splits.grouped_split` by `group_by` (no patient/case in two splits).
        train_split, val_split, test_split: split names ("official": dataset split names;
            "grouped": keys of `fractions`). val_split/test_split may be null (none).
        group_by: "patient", "case", "study", "image", "question" or "id" (grouped splits only).
        fractions: split name -> fraction of groups (grouped splits only; must sum to 1).
        source_splits: dataset splits pooled before a grouped split (default: all of them).
        stratify: a `Sample.targets` key whose proportions the grouped split keeps similar.
        skip_bad: skip and count bad samples (unreadable images, ...) instead of stopping.
        max_samples: keep at most this many samples per split (first N; for quick runs).
        split_seed: seed of the grouped split (default: the run's seed). Fixing it lets runs
            with different training seeds share one split (ablations, paired tests).
    """

    dataset: str
    root: str
    split: Literal["official", "grouped"] = "official"
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    group_by: str = "patient"
    fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.7, "val": 0.1, "test": 0.2})
    source_splits: list[str] | None = None
    stratify: str | None = None
    skip_bad: bool = True
    max_samples: int | None = None
    split_seed: int | None = None


@dataclass
class TrainerConfig:
    """How to train. Every field has a default, so a config lists only what it changes.

    Attributes:
        max_epochs: number of passes over the training split.
        max_steps: stop after this many optimizer steps (-1: no limit).
        batch_size: samples per process per step (global batch = batch_size * devices *
            num_nodes * accumulate_grad_batches).
        eval_batch_size: batch size for validation/test/predict (default: batch_size).
        lr, weight_decay: AdamW; weight decay applies to weights with >= 2 dims only.
        scheduler: "cosine", "linear" (decay to 0 after warmup), "constant", and two stepped
            once per epoch, without warmup: "multistep" (learning rate times `lr_gamma` at each
            epoch in `lr_milestones`, e.g. [50, 75] of 100 as in MedMNIST v2) and
            "cosine_restarts" (SGDR: cosine from `lr` to `min_lr` over `lr_restart_epochs`
            epochs, then again, as LViT's 10 epochs down to 1e-4).
        lr_milestones, lr_gamma: the "multistep" schedule's epochs and factor.
        lr_restart_epochs, min_lr: the "cosine_restarts" schedule's period and floor.
        onecycle_pct_start: the "onecycle" schedule's rising part, a fraction of all steps.
        warmup_steps: linear warmup from 0 over this many optimizer steps.
        lr_multipliers: learning-rate factor per parameter-name prefix, e.g.
            {image_encoder: 0.1} fine-tunes a pretrained encoder at a tenth of `lr`
            (longest prefix wins; a prefix matching no trainable parameter is an error).
        precision: "32" or "bf16-mixed" (bf16 autocast also works on CPU).
        accumulate_grad_batches: gradient accumulation.
        gradient_clip_val: clip the gradient norm (null: no clipping).
        early_stopping_patience: validations without improvement before stopping (null: off).
        monitor: the logged value that picks the best checkpoint and drives early stopping:
            "val/loss" or "val/<metric>" for any metric the task's compute_metrics returns.
        monitor_mode: "min" or "max" (default: min for names containing "loss", else max).
        accelerator: "cpu", "gpu" or "auto".
        devices, num_nodes, strategy: Lightning's (e.g. devices=2, strategy="ddp").
        num_workers: DataLoader worker processes.
        channels_last: put 4-D image tensors and the model in channels_last memory format.
        num_threads: torch.set_num_threads (null: torch's default).
        limit_train_batches, limit_val_batches: Lightning's (int = batches, float = fraction).
        val_every_n_epochs: run validation every N epochs.
        checkpoint_every_n_steps: also write checkpoints/last.ckpt every N optimizer steps
            (null: at the end of every epoch only); a rerun in the same run dir resumes there.
        deterministic: torch.use_deterministic_algorithms (warn-only where an op has none).
        log_every_n_steps: how often training scalars are logged.
        progress_bar: show Lightning's rich progress bar.
    """

    max_epochs: int = 10
    max_steps: int = -1
    batch_size: int = 16
    eval_batch_size: int | None = None
    lr: float = 1e-4
    weight_decay: float = 0.01
    scheduler: Literal["cosine", "linear", "constant", "multistep", "cosine_restarts", "onecycle"] = "cosine"
    warmup_steps: int = 0
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    lr_restart_epochs: int = 10
    min_lr: float = 0.0
    onecycle_pct_start: float = 0.3
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    precision: Literal["32", "bf16-mixed"] = "32"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    early_stopping_patience: int | None = None
    monitor: str = "val/loss"
    monitor_mode: Literal["min", "max"] | None = None
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    num_workers: int = 0
    channels_last: bool = False
    num_threads: int | None = None
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    val_every_n_epochs: int = 1
    checkpoint_every_n_steps: int | None = None
    deterministic: bool = True
    log_every_n_steps: int = 10
    progress_bar: bool = True

    def resolved_monitor_mode(self) -> str:
        """`monitor_mode`, or its default from the monitored name."""
        if self.monitor_mode is not None:
            return self.monitor_mode
        return "min" if "loss" in self.monitor else "max"


@dataclass
class RunConfig:
    """A whole run: the task, its data, its model section, how to train, the seed."""

    task: str
    data: DataConfig
    model: dict[str, Any] = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-serialisable) of the whole config."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, where: str | Path | None) -> Any:
    """Check `value` against type `tp` (converting where YAML is ambiguous, e.g. "1e-3")."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors: list[ConfigError] = []
        candidates = [a for a in args if a is not type(None)]
        # Declared order: `int | float` keeps 3 an int.
        for arg in candidates:
            try:
                return _coerce(value, arg, key, where)
            except ConfigError as exc:
                errors.append(exc)
        if len(candidates) == 1:  # `X | None`: X's own message names the exact key
            raise errors[0]
        raise ConfigError(where, key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        # YAML reads `precision: 32` as an int; the allowed values are strings.
        for allowed in args:
            if value == allowed or (isinstance(allowed, str) and str(value) == allowed):
                return allowed
        raise ConfigError(where, key, f"must be one of {', '.join(map(repr, args))}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(where, key, f"expected a mapping, got {value!r}")
        return build_dataclass(tp, value, where, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(where, key, f"expected a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(where, key, f"expected {len(args)} items, got {value!r}")
            return tuple(_coerce(v, t, f"{key}[{i}]", where) for i, (v, t) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(where, key, f"expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}", where) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(where, key, f"expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(where, key, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(where, key, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(where, key, f"expected a string, got {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(where, key, f"expected {_type_name(tp)}, got {value!r}")
    return value


def unknown_key_problem(key: str, known) -> str:
    """"unknown key (did you mean 'x'?) (known keys: ...)": the closest name first (difflib)."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint} (known keys: {', '.join(known)})"


# Numeric fields that must be >= their bound (None, where allowed, is always fine).
_AT_LEAST = {
    "trainer.max_epochs": 1, "trainer.batch_size": 1, "trainer.eval_batch_size": 1, "trainer.warmup_steps": 0,
    "trainer.accumulate_grad_batches": 1, "trainer.early_stopping_patience": 0, "trainer.devices": 1,
    "trainer.num_nodes": 1, "trainer.num_workers": 0, "trainer.num_threads": 1, "trainer.val_every_n_epochs": 1,
    "trainer.checkpoint_every_n_steps": 1, "trainer.log_every_n_steps": 1, "trainer.weight_decay": 0,
    "trainer.lr": 0, "data.max_samples": 1,  # lr 0 is allowed: a frozen run (tests use it)
}
_POSITIVE = ("trainer.gradient_clip_val",)


def check_values(cfg: RunConfig, where: str | Path | None = None) -> None:
    """ConfigError for values of the right type but impossible (batch_size 0, negative lr, ...)."""
    def get(key: str):
        section, name = key.split(".")
        return getattr(getattr(cfg, section), name)

    for key, low in _AT_LEAST.items():
        v = get(key)
        if v is not None and not v >= low:  # `not >=` also catches NaN
            raise ConfigError(where, key, f"must be at least {low}, got {v!r}")
    for key in _POSITIVE:
        v = get(key)
        if v is not None and not v > 0:  # also catches NaN
            raise ConfigError(where, key, f"must be a positive number, got {v!r}")
    if cfg.trainer.max_steps != -1 and cfg.trainer.max_steps < 1:
        raise ConfigError(where, "trainer.max_steps", f"must be -1 (no limit) or at least 1, got {cfg.trainer.max_steps}")
    for prefix, factor in cfg.trainer.lr_multipliers.items():
        if not factor >= 0:
            raise ConfigError(where, f"trainer.lr_multipliers.{prefix}", f"must be >= 0, got {factor!r}")


def build_dataclass(cls: type, values: dict[str, Any], where: str | Path | None = None, prefix: str = ""):
    """Build dataclass `cls` from a mapping, checking keys and types.

    Raises ConfigError naming the (dotted) key and `where` (the file) for an unknown key (an old
    key that `cls.moved_keys` lists: naming its new place), a missing required key or a value of
    the wrong type. Nested sections (dataclass-typed fields) are built the same way.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(where, prefix.rstrip(".") or "<root>", f"expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in values if k not in fields]
    if unknown:
        key = str(unknown[0])
        problem = moved_key_problem(cls, key, prefix) or unknown_key_problem(key, fields)
        raise ConfigError(where, f"{prefix}{key}", problem)
    kwargs = {}
    for name, f in fields.items():
        if name in values:
            if dataclasses.is_dataclass(hints[name]) and not isinstance(values[name], dict):
                problem = moved_key_problem(cls, name, prefix)  # an old scalar key that names a section now
                if problem:
                    raise ConfigError(where, f"{prefix}{name}", problem)
            kwargs[name] = _coerce(values[name], hints[name], f"{prefix}{name}", where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(where, f"{prefix}{name}", "required key is missing")
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split "a.b.c=value" into (["a", "b", "c"], value parsed as a YAML scalar)."""
    if "=" not in text:
        raise ConfigError("override", text, "expected KEY=VALUE, e.g. trainer.max_epochs=3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError("override", text, "empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError("override", key, f"value {raw!r} is not valid YAML: {exc}") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted overrides to a raw config dict (in place; returns it)."""
    for text in overrides:
        parts, value = parse_override(text)
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError("override", ".".join(parts[: i + 1]), f"is {child!r}, not a section")
            node = child
        node[parts[-1]] = value
    return raw


def config_from_dict(raw: dict[str, Any], where: str | Path | None = None, base_dir: Path | None = None) -> RunConfig:
    """Build a RunConfig from a plain dict; relative data.root resolves against base_dir (cwd)."""
    cfg = build_dataclass(RunConfig, raw, where)
    check_values(cfg, where)
    if not cfg.task:
        raise ConfigError(where, "task", "must name a registered task")
    root = Path(cfg.data.root).expanduser()
    if not root.is_absolute():
        root = (base_dir or Path.cwd()) / root
    cfg.data.root = str(root.resolve())
    if cfg.data.split == "grouped":
        if cfg.data.train_split not in cfg.data.fractions:
            raise ConfigError(where, "data.train_split", f"{cfg.data.train_split!r} is not a key of data.fractions")
        for key in ("val_split", "test_split"):
            name = getattr(cfg.data, key)
            if name is not None and name not in cfg.data.fractions:
                raise ConfigError(where, f"data.{key}", f"{name!r} is not a key of data.fractions")
    return cfg


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "<file>", f"cannot read: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, "<file>", f"not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, "<file>", "a config file must be a mapping (task:, data:, model:, trainer:)")
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None, *, validate_model: bool = False) -> RunConfig:
    """Read a YAML run config, apply dotted overrides, check every key and type.

    Args:
        path: the YAML file.
        overrides: e.g. ["trainer.max_epochs=3", "data.root=PATH", "model.fusion=gated"];
            values are parsed as YAML scalars (3 -> int, 1e-3 -> float, null -> None).
        validate_model: also check the `model:` section against the task's `Config`
            dataclass (imports the task and torch).

    Raises:
        ConfigError naming the key and the file for unknown keys and wrong types.
    """
    overrides = list(overrides or [])
    raw = apply_overrides(read_yaml(path), overrides)
    try:
        cfg = config_from_dict(raw, where=path)
        if validate_model:
            validate_model_section(cfg, where=path)
    except ConfigError as exc:
        raise _blame_override(exc, overrides) from None
    return cfg


def _blame_override(exc: ConfigError, overrides: list[str]) -> ConfigError:
    """The error again, naming the command-line override when the bad key came from one."""
    for text in reversed(overrides):  # the last override of a key is the one that counts
        key = ".".join(parse_override(text)[0])
        if exc.key == key or exc.key.startswith(f"{key}.") or exc.key.startswith(f"{key}["):
            return ConfigError(f"command-line override {text!r}", exc.key, exc.problem)
    return exc


def validate_model_section(cfg: RunConfig, where: str | Path | None = None) -> Any:
    """Check cfg.model against the task's Config dataclass; returns the parsed Config."""
    from medmm.engine.loading import import_plugins
    from medmm.engine.task import get_task_class

    import_plugins()
    try:
        cls = get_task_class(cfg.task)
    except MedmmError as exc:
        raise ConfigError(where, "task", str(exc)) from None
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        return cfg.model
    return build_dataclass(config_cls, cfg.model, where, prefix="model.")


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (what `load_config` reads back)."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
