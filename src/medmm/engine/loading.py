"""From a config to a task, and from a run directory back to its trained task."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from medmm.engine import rundir as rd
from medmm.engine.config import RunConfig, validate_model_section
from medmm.engine.task import Task, get_task_class
from medmm.errors import BadInputError


def import_plugins() -> None:
    """Import the modules listed in $MEDMM_PLUGINS (comma-separated), e.g. out-of-tree tasks.

    Their @register_task / @register_dataset decorators then make them usable by name.
    """
    import importlib

    for name in filter(None, (m.strip() for m in os.environ.get("MEDMM_PLUGINS", "").split(","))):
        importlib.import_module(name)


def build_task(cfg: RunConfig, where: str | Path | None = None) -> Task:
    """The task named by cfg.task, built from cfg.model (checked against its Config)."""
    import_plugins()
    validate_model_section(cfg, where)
    try:
        return get_task_class(cfg.task).from_config(cfg.model)
    except TypeError as exc:
        raise _kwargs_error(exc, cfg, where) from None


def _kwargs_error(exc: TypeError, cfg: RunConfig, where: str | Path | None) -> Exception:
    """A ConfigError naming the model.*_kwargs key whose argument the constructor rejected
    (Python checks the call against the target's signature); other TypeErrors unchanged."""
    import re

    from medmm.engine.config import ConfigError
    from medmm.engine.config_fields import mapping_holding

    m = re.search(r"(\S+)\(\) got an unexpected keyword argument '(\w+)'", str(exc))
    if m:
        target, arg = m.groups()
        key = mapping_holding(cfg.model, arg, "model")  # e.g. model.image.encoder_kwargs
        if key is not None:
            return ConfigError(where, f"{key}.{arg}", f"not an argument of {target.removesuffix('.__init__')}")
    return exc


def load_run(run_dir: str | Path, model_overrides: list[str] | None = None) -> tuple[RunConfig, Task]:
    """The run's resolved config and its task with the best weights loaded (eval mode).

    The weights' sha256 is checked against task_state.json; loading is strict (a missing or
    unexpected weight is an error, never silently dropped). `model_overrides` ("model.KEY=VALUE",
    e.g. decoding options such as model.decoding.beam_size=3) change the saved `model:` section before the
    task is built; an override that changes the architecture fails the strict load.
    """
    run_dir = Path(run_dir)
    cfg = rd.read_yaml_config(run_dir)
    if cfg is None:
        raise BadInputError(run_dir / rd.CONFIG, "not a medmm run directory (no config.yaml)")
    if model_overrides:
        from medmm.engine.config import ConfigError, apply_overrides, config_from_dict

        bad = [o for o in model_overrides if not o.strip().startswith("model.")]
        if bad:
            raise ConfigError("override", bad[0], "only model.* keys may be overridden for a trained run")
        cfg = config_from_dict(apply_overrides(cfg.to_dict(), list(model_overrides)), where=run_dir / rd.CONFIG)
    state = rd.read_json(run_dir / rd.TASK_STATE)
    weights = run_dir / state.get("weights", rd.WEIGHTS)
    if not weights.exists():
        raise BadInputError(weights, "no trained weights; did training finish?")
    if state.get("sha256") and rd.sha256_file(weights) != state["sha256"]:
        raise BadInputError(weights, "sha256 does not match task_state.json (file changed or corrupt)")
    task = build_task(cfg, run_dir / rd.CONFIG)
    task.load_state(state["state"])
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    task.load_state_dict(sd, strict=True)
    if cfg.trainer.channels_last:
        task.to(memory_format=torch.channels_last)
    task.eval()
    return cfg, task
