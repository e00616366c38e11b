"""Gradient and perturbation attributions through captum: integrated gradients and occlusion
on images, layer integrated gradients on the text encoder's input embeddings."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from medmm.errors import MedmmError, require

ImageScores = Callable[[torch.Tensor], torch.Tensor]


def _target(target: int | torch.Tensor) -> int | torch.Tensor:
    return target if isinstance(target, int) else torch.as_tensor(target).long()


def integrated_gradients(
    forward: ImageScores, images: torch.Tensor, target: int | torch.Tensor, baseline: torch.Tensor | None = None, steps: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients w.r.t. the input pixels: (attributions (B, C, H, W), convergence delta (B,)).

    forward(images) -> scores (B, classes). Baseline default: zeros (the normalised mean image).
    """
    require("captum", "train", "integrated gradients")
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(forward)
    base = torch.zeros_like(images) if baseline is None else baseline
    with torch.enable_grad():
        attr, delta = ig.attribute(images, baselines=base, target=_target(target), n_steps=steps,
                                   internal_batch_size=max(1, images.shape[0]) * steps, return_convergence_delta=True)
    return attr.detach(), delta.detach()


def occlusion(
    forward: ImageScores, images: torch.Tensor, target: int | torch.Tensor, window: int = 8, stride: int = 4, baseline: float = 0.0
) -> torch.Tensor:
    """Occlusion sensitivity (B, C, H, W): score drop when a window x window patch is set to `baseline`."""
    require("captum", "train", "occlusion")
    from captum.attr import Occlusion

    c = images.shape[1]
    with torch.no_grad():
        attr = Occlusion(forward).attribute(
            images, sliding_window_shapes=(c, window, window), strides=(c, stride, stride), baselines=baseline, target=_target(target)
        )
    return attr.detach()


def pixel_map(attr: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """Collapse (B, C, H, W) attributions to (B, H, W): channel sum (signed) or its absolute value."""
    m = attr.sum(1)
    return m if signed else m.abs()


def text_embedding_layer(encoder: nn.Module) -> nn.Module:
    """The token-embedding module of a medmm text encoder (scratch, minilm, hf:)."""
    if hasattr(encoder, "token_embed"):
        return encoder.token_embed
    model = getattr(encoder, "model", None)
    if model is not None and hasattr(model, "get_input_embeddings"):
        return model.get_input_embeddings()
    raise MedmmError(f"cannot find the input embeddings of text encoder {type(encoder).__name__}")


def token_attributions(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    embedding: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    target: int | torch.Tensor,
    baseline_id: int = 0,
    steps: int = 32,
    keep_ids: tuple[int, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer integrated gradients on the token embeddings: (per-token attribution (B, L), delta (B,)).

    forward(input_ids, attention_mask) -> scores (B, classes). The baseline replaces every real
    token by `baseline_id` (the pad id by default) except ids in `keep_ids` (e.g. [CLS]/[SEP],
    whose removal would change the input's structure rather than its content); the attention
    mask is unchanged. Padding positions get 0.
    """
    require("captum", "train", "token attributions")
    from captum.attr import LayerIntegratedGradients

    base = torch.full_like(input_ids, baseline_id)
    for k in keep_ids:
        base = torch.where(input_ids == k, input_ids, base)
    lig = LayerIntegratedGradients(forward, embedding)
    with torch.enable_grad():
        attr, delta = lig.attribute(input_ids, baselines=base, target=_target(target), additional_forward_args=(attention_mask,),
                                    n_steps=steps, return_convergence_delta=True)
    per_token = attr.sum(-1).detach() * attention_mask.to(attr.dtype)
    return per_token, delta.detach()
