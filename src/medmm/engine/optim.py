"""Optimizer parameter groups: weight decay by parameter shape, learning rate by module name.

A pretrained encoder fine-tuned at the learning rate of a freshly initialised head tends to lose
what it learnt in pretraining ("catastrophic forgetting"); the usual remedy is a smaller learning
rate for the pretrained part (discriminative fine-tuning). `trainer.lr_multipliers` maps a
parameter-name prefix (as in `task.named_parameters()`, e.g. "image_encoder") to a factor of
`trainer.lr`; the longest matching prefix wins, and every other parameter gets factor 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from medmm.engine.config import ConfigError


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
