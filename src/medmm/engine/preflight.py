"""Checks that make a run fail before training, not after its first epoch: the run dir takes
files, and trainer.monitor names a value the task really logs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from medmm.data.schema import Sample
from medmm.engine import rundir as rd
from medmm.engine.config import RunConfig
from medmm.engine.inference import run_inference
from medmm.engine.task import Task

log = logging.getLogger("medmm.engine")


def check_writable(run_dir: Path) -> None:
    """Fail before training, naming the folder, when run_dir cannot take files."""
    probe = rd.temp_path(run_dir / "write-check")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
    except OSError as exc:
        raise rd.write_error(run_dir / rd.CONFIG, exc) from None
    finally:
        probe.unlink(missing_ok=True)


def check_monitor(task: Task, val_samples: list[Sample], cfg: RunConfig) -> None:
    """Fail before training when trainer.monitor is never logged.

    Scores up to 32 validation samples once; the RNG states are restored afterwards so the
    check does not change the run.
    """
    import random

    import numpy as np

    from medmm.engine.config import ConfigError

    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        records, _ = run_inference(task, val_samples[:32], cfg)
        if not records:
            return
        try:
            metrics = task.compute_metrics(records)
        except Exception as exc:  # noqa: BLE001 - tiny subsets may break some metrics; checked later
            log.warning("could not pre-check trainer.monitor on 32 samples: %s", exc)
            return
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
    names = sorted({"val/loss", *(f"val/{k}" for k in _flat_keys(metrics))})
    if cfg.trainer.monitor not in names:
        raise ConfigError(None, "trainer.monitor", f"{cfg.trainer.monitor!r} is never logged; logged values: {', '.join(names)}")


def _flat_keys(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Numeric leaves of nested metrics (NaN included: a metric can be NaN on a tiny subset)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_flat_keys(v, f"{prefix}{k}/"))
        elif (isinstance(v, (int, float)) and not isinstance(v, bool)) or hasattr(v, "dtype"):
            out[f"{prefix}{k}"] = v
    return out
