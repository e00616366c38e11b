"""Running a task over samples in this process (no Lightning): evaluation, prediction, calibration."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from medmm.data.schema import Sample
from medmm.engine.config import RunConfig
from medmm.engine.data import make_loader
from medmm.engine.task import Task

log = logging.getLogger("medmm.engine")

F = TypeVar("F", bound=Callable[..., Any])


def restoring_torch_state(fn: F) -> F:
    """Run fn, then put back torch's global settings a run changes (threads, deterministic mode),
    so calling the engine from a larger program (or a test session) leaves it as it was."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        n = torch.get_num_threads()
        det = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(n)
            torch.use_deterministic_algorithms(det, warn_only=warn_only)

    return wrapper  # type: ignore[return-value]


def set_threads(cfg: RunConfig) -> None:
    """torch's thread count from trainer.num_threads (unset: torch's default)."""
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)


def _autocast(precision: str, device: torch.device):
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def inference_device(cfg: RunConfig) -> torch.device:
    """CUDA when the config asks for a GPU (or "auto") and one is present, else CPU."""
    if cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def run_inference(
    task: Task, samples: list[Sample], cfg: RunConfig, *, with_references: bool = True
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Records for `samples` (evaluation_step, or predict_step without references).

    Returns (records, skipped) where skipped maps a bad sample's id to its error message.
    Runs in this process (no Lightning), in eval mode, under no_grad and the run's precision.
    """
    from lightning.fabric.utilities.apply_func import move_data_to_device

    from medmm.engine.module import to_channels_last

    tc = cfg.trainer
    loader = make_loader(
        samples,
        task.collate if with_references else task.predict_collate,
        batch_size=tc.eval_batch_size or tc.batch_size,
        num_workers=tc.num_workers,
        seed=cfg.seed,
        shuffle=False,
        skip_bad=cfg.data.skip_bad,
    )
    device = inference_device(cfg)
    task.to(device)
    was_training = task.training
    task.eval()
    records: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    try:
        with torch.no_grad(), _autocast(tc.precision, device):
            for sb in loader:
                for sid, msg in sb.skipped:
                    log.warning("skipped bad sample %s: %s", sid, msg)
                    skipped[sid] = msg
                if sb.batch is None:
                    continue
                batch = move_data_to_device(sb.batch, device)
                batch = to_channels_last(batch) if tc.channels_last else batch
                step = task.evaluation_step if with_references else task.predict_step
                records.extend(step(batch))
    finally:
        task.train(was_training)
    return records, skipped
