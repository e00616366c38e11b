"""Optimizer parameter groups (weight decay by parameter shape, learning rate by module name) and
the learning-rate schedules stepped once per epoch ("multistep", "cosine_restarts") and the
one-cycle schedule ("onecycle", per step).

A pretrained encoder fine-tuned at the learning rate of a freshly initialised head tends to lose
what it learnt in pretraining ("catastrophic forgetting"); the usual remedy is a smaller learning
rate for the pretrained part (discriminative fine-tuning). `trainer.lr_multipliers` maps a
parameter-name prefix (as in `task.named_parameters()`, e.g. "image_encoder") to a factor of
`trainer.lr`; the longest matching prefix wins, and every other parameter gets factor 1.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping

import torch

from medmm.engine.config import ConfigError, TrainerConfig


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def parameter_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    lr: float,
    weight_decay: float,
    lr_multipliers: Mapping[str, float] | None = None,
) -> list[dict]:
    """AdamW parameter groups for the trainable parameters.

    Weights with >= 2 dims get `weight_decay`; biases and norm scales none (standard AdamW
    practice). Each group carries `lr = lr * factor` and its factor as "lr_scale", so the
    unscaled learning rate can be logged. The factor-1 groups come first.

    Raises:
        ConfigError: a factor is not positive, or a prefix matches no trainable parameter (a
            typo, or a module that is frozen), so a misconfigured run stops before training.
    """
    multipliers = dict(lr_multipliers or {})
    for prefix, factor in multipliers.items():
        if not factor > 0:
            raise ConfigError(
                None, f"trainer.lr_multipliers.{prefix}", f"must be > 0, got {factor} (freeze a module instead)"
            )
    # Longest prefix first, so "text_encoder.lora" can override "text_encoder".
    prefixes = sorted(multipliers, key=len, reverse=True)
    used: set[str] = set()
    buckets: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        prefix = next((p for p in prefixes if _matches(name, p)), None)
        if prefix is not None:
            used.add(prefix)
        factor = multipliers[prefix] if prefix is not None else 1.0
        buckets.setdefault((factor, param.dim() >= 2), []).append(param)
    unused = [p for p in multipliers if p not in used]
    if unused:
        raise ConfigError(
            None,
            "trainer.lr_multipliers",
            f"{', '.join(map(repr, unused))} match no trainable parameter "
            "(names are those of task.named_parameters(); a frozen module has none)",
        )
    # Factor 1 first (the logged learning rate is group 0's), then by factor, decayed before not.
    order = sorted(buckets, key=lambda key: (key[0] != 1.0, key[0], not key[1]))
    return [
        {
            "params": buckets[key],
            "lr": lr * key[0],
            "lr_scale": key[0],
            "weight_decay": weight_decay if key[1] else 0.0,
        }
        for key in order
    ]


def epoch_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainerConfig) -> dict | None:
    """Lightning's lr_scheduler dict for the schedules stepped once per epoch, else None.

    "multistep": lr * lr_gamma**(number of lr_milestones <= current epoch), torch's MultiStepLR
    (MedMNIST v2: 100 epochs, milestones [50, 75], gamma 0.1). "cosine_restarts": torch's
    CosineAnnealingWarmRestarts with T_0 = lr_restart_epochs and eta_min = min_lr (LViT: 10, 1e-4).
    Per epoch, so neither depends on the number of steps per epoch.

    Raises:
        ConfigError: milestones missing, not strictly increasing or outside 1..max_epochs-1 (a
            decay that never happens is a misconfiguration), lr_milestones given to another
            schedule, gamma not in (0, 1], a restart period < 1, min_lr not below lr, or warmup
            asked for (these schedules have none).
    """
    kind = cfg.scheduler
    if kind != "multistep" and cfg.lr_milestones:
        raise ConfigError(None, "trainer.lr_milestones", f'only used by scheduler "multistep", not {kind!r}')
    if kind not in ("multistep", "cosine_restarts"):
        return None
    if cfg.warmup_steps:
        raise ConfigError(None, "trainer.warmup_steps", f"scheduler {kind!r} has no warmup; set 0, got {cfg.warmup_steps}")
    if kind == "cosine_restarts":
        if cfg.lr_restart_epochs < 1:
            raise ConfigError(None, "trainer.lr_restart_epochs", f"must be >= 1, got {cfg.lr_restart_epochs}")
        if not 0 <= cfg.min_lr < cfg.lr:
            raise ConfigError(None, "trainer.min_lr", f"must be in [0, lr={cfg.lr}), got {cfg.min_lr}")
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=cfg.lr_restart_epochs, eta_min=cfg.min_lr
        )
        return {"scheduler": sched, "interval": "epoch"}
    milestones, key = list(cfg.lr_milestones), "trainer.lr_milestones"
    if not milestones:
        raise ConfigError(None, key, 'scheduler "multistep" needs at least one epoch, e.g. [50, 75]')
    if any(b <= a for a, b in itertools.pairwise(milestones)):
        raise ConfigError(None, key, f"must be strictly increasing, got {milestones}")
    if milestones[0] < 1 or milestones[-1] >= cfg.max_epochs:
        raise ConfigError(None, key, f"epochs must lie in 1..{cfg.max_epochs - 1} (trainer.max_epochs={cfg.max_epochs}), got {milestones}")
    if not 0 < cfg.lr_gamma <= 1:
        raise ConfigError(None, "trainer.lr_gamma", f"must be in (0, 1], got {cfg.lr_gamma}")
    sched = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=cfg.lr_gamma)
    return {"scheduler": sched, "interval": "epoch"}


def onecycle_schedule(cfg: TrainerConfig, total: int, div_factor: float = 25.0, final_div_factor: float = 1e4):
    """LR multiplier per optimizer step of Smith's one-cycle schedule, as torch's OneCycleLR
    (anneal_strategy "cos", its default factors): from 1/div_factor up to 1 over the first
    `onecycle_pct_start` of the `total` steps, then down to 1/(div_factor * final_div_factor).

    A LambdaLR multiplier rather than OneCycleLR itself: the schedule is recomputed from the
    current total, so a resumed run may extend training (trainer.max_epochs), as with the other
    schedules; and each parameter group keeps its own `lr_multipliers` factor. Unlike
    OneCycleLR, it does not cycle the optimizer's momentum (AdamW's beta1 stays as set).

    Raises:
        ConfigError: onecycle_pct_start not in (0, 1), or warmup_steps set (the rise is the warm-up).
    """
    if not 0 < cfg.onecycle_pct_start < 1:
        raise ConfigError(None, "trainer.onecycle_pct_start", f"must be in (0, 1), got {cfg.onecycle_pct_start}")
    if cfg.warmup_steps:
        raise ConfigError(None, "trainer.warmup_steps", f'scheduler "onecycle" warms up over onecycle_pct_start; set 0, got {cfg.warmup_steps}')
    top = float(cfg.onecycle_pct_start * total) - 1  # the step of the peak, as OneCycleLR counts
    end = total - 1
    low, floor = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)

    def cos(start: float, stop: float, frac: float) -> float:
        return stop + (start - stop) / 2.0 * (1.0 + math.cos(math.pi * min(max(frac, 0.0), 1.0)))

    def f(step: int) -> float:
        if step <= top:
            return cos(low, 1.0, step / top if top > 0 else 1.0)
        return cos(1.0, floor, (step - top) / (end - top) if end > top else 1.0)

    return f
