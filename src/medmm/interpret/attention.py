"""Attention-based image maps: ViT attention rollout and fusion cross-attention maps.

These read attention probabilities the models already expose (`ImageFeatures.attentions`,
fusion `extras`); they need no gradients. Attention is not explanation by itself: check such
maps with `medmm.interpret.faithfulness` like any other heatmap.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def attention_rollout(attentions: list[torch.Tensor], residual: float = 0.5, head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): relevance of each of the N tokens, (B, N).

    attentions: per-layer probabilities (B, heads, N, N), first layer first. Each layer's
    head-fused attention is mixed with the identity (the residual path, weight `residual`),
    rows renormalised, and the layers multiplied. The encoders here have no CLS token, so a
    token's relevance is the mean over all query tokens of the rolled-out matrix's column.
    """
    if not attentions:
        raise ValueError("no attention maps: the image encoder is not a transformer or did not return attentions")
    if head_fusion not in ("mean", "max"):
        raise ValueError(f"head_fusion must be 'mean' or 'max', got {head_fusion!r}")
    roll = None
    for att in attentions:
        a = att.float()
        a = a.mean(1) if head_fusion == "mean" else a.max(1).values
        eye = torch.eye(a.shape[-1], device=a.device).expand_as(a)
        a = residual * eye + (1 - residual) * a
        a = a / a.sum(-1, keepdim=True)
        roll = a if roll is None else a @ roll
    return roll.mean(1)


def cross_attention_regions(extras: dict[str, Any], attention_mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """Image-region weights (B, N) from a fusion block's extras, or None if it has none.

    cross_attention: `text_to_image_attention` (B, L, N) averaged over the real text tokens;
    gated: `spatial_attention` (B, N) (the text-query spatial pooling weights);
    ban: `bilinear_attention` (B, G, N, L) summed over the text tokens (padding already has
    none) and averaged over the glimpses, so the weights of a sample sum to 1.
    """
    if "text_to_image_attention" in extras:
        att = extras["text_to_image_attention"].detach().float()
        if attention_mask is None:
            return att.mean(1)
        m = attention_mask.to(att.device).float()[..., None]
        return (att * m).sum(1) / m.sum(1).clamp_min(1.0)
    if "spatial_attention" in extras:
        return extras["spatial_attention"].detach().float()
    if "bilinear_attention" in extras:
        return extras["bilinear_attention"].detach().float().sum(-1).mean(1)
    return None


def token_attention_to_text(extras: dict[str, Any], attention_mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """Attention weight of each text token, (B, L), zero on padding; None without such a map.

    cross_attention: how much the image tokens attend to each text token (averaged over them);
    ban: `bilinear_attention` summed over the image tokens and averaged over the glimpses."""
    if "image_to_text_attention" in extras:
        w = extras["image_to_text_attention"].detach().float().mean(1)
    elif "bilinear_attention" in extras:
        w = extras["bilinear_attention"].detach().float().sum(2).mean(1)
    else:
        return None
    if attention_mask is not None:
        w = w * attention_mask.to(w.device).float()
    return w


def tokens_to_grid(weights: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, N) token weights -> (B, h, w) grid (square when `grid` is not given)."""
    n = weights.shape[-1]
    if grid is None:
        g = int(round(math.sqrt(n)))
        if g * g != n:
            raise ValueError(f"{n} tokens do not form a square grid; pass grid=(h, w)")
        grid = (g, g)
    if grid[0] * grid[1] != n:
        raise ValueError(f"grid {grid} does not hold {n} tokens")
    return weights.reshape(weights.shape[0], *grid)
