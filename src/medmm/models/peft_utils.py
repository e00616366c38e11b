"""Parameter-efficient fine-tuning: LoRA via peft, freezing helpers and parameter counts."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from medmm.errors import MedmmError, require

# Attention projection names used by common backbones; LoRA on query/value is the usual default.
_DEFAULT_TARGETS = (
    ("query", "value"),  # BERT, HF ViT/DeiT/DINOv2
    ("q_proj", "v_proj"),  # CLIP, SigLIP, LLaMA-style decoders
    ("c_attn",),  # GPT-2 decoders
    ("qkv",),  # MONAI ViT, Swin
)


def default_lora_targets(module: nn.Module) -> list[str]:
    """The first known family of attention-projection Linear layer names present in `module`."""
    names = {n.rsplit(".", 1)[-1] for n, m in module.named_modules() if isinstance(m, nn.Linear)}
    for family in _DEFAULT_TARGETS:
        if all(t in names for t in family):
            return list(family)
    raise MedmmError(
        f"could not guess LoRA target modules for {type(module).__name__}; pass target_modules "
        f"(Linear layer names found: {', '.join(sorted(names)[:30])})"
    )


def apply_lora(
    module: nn.Module, r: int = 8, alpha: int = 16, target_modules: Iterable[str] | None = None, dropout: float = 0.05
) -> nn.Module:
    """Inject LoRA adapters (peft) into `module` in place and freeze everything else in it.

    Works on HF encoders/decoders and on plain torch modules (e.g. MONAI ViT, our wrappers).
    Returns the same module; only the `lora_` parameters of it stay trainable.
    """
    peft = require("peft", "train", "LoRA fine-tuning")
    targets = list(target_modules) if target_modules else default_lora_targets(module)
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    peft.inject_adapter_in_model(config, module)
    n_lora = 0
    for name, p in module.named_parameters():
        is_lora = "lora_" in name
        p.requires_grad_(is_lora)
        n_lora += p.numel() if is_lora else 0
    if n_lora == 0:
        raise MedmmError(f"no LoRA parameters were injected for target_modules={targets}")
    return module


def freeze(module: nn.Module) -> nn.Module:
    """Set requires_grad=False on every parameter (a frozen backbone)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Set requires_grad=True on every parameter."""
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def freeze_except(model: nn.Module, trainable: Iterable[str]) -> nn.Module:
    """Freeze all parameters except those whose name starts with one of `trainable` prefixes
    (e.g. freeze_except(classifier, ["fusion", "head"]) = frozen encoders, trained fusion + head)."""
    prefixes = tuple(trainable)
    matched = False
    for name, p in model.named_parameters():
        keep = name.startswith(prefixes)
        matched |= keep
        p.requires_grad_(keep)
    if prefixes and not matched:
        raise MedmmError(f"no parameter name starts with any of {list(prefixes)}")
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
