"""The one training engine (Lightning underneath), configs, run directories, checkpoints.

    from medmm.engine import load_config, train, evaluate, predict, load_run
    cfg = load_config("configs/diagnosis/covid_cxr.yaml", ["trainer.max_epochs=3"])
    metrics = train(cfg, "runs/covid")            # reruns resume from runs/covid/checkpoints/last.ckpt
    evaluate("runs/covid", "../shared/data/covid_cxr", split="test")

`medmm.engine.config` is torch-free; the rest is imported on first use.
"""

from __future__ import annotations

from typing import Any

from medmm.engine.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    TrainerConfig,
    load_config,
)

_LAZY = {
    "train": "medmm.engine.api",
    "evaluate": "medmm.engine.api",
    "predict": "medmm.engine.api",
    "load_run": "medmm.engine.api",
    "build_task": "medmm.engine.api",
    "run_inference": "medmm.engine.api",
    "write_report": "medmm.engine.report",
    "evaluate_untrained": "medmm.engine.zero_shot",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medmm.engine' has no attribute {name!r}")


# One list of the lazy names (_LAZY's keys, all strings); ruff cannot see through the unpacking.
__all__ = ["ConfigError", "DataConfig", "RunConfig", "TrainerConfig", "load_config", *_LAZY]  # noqa: PLE0604
