"""Grad-CAM and Grad-CAM++ on a CNN feature map (e.g. one of `ImageFeatures.maps`).

The model is passed as a function returning (class scores, feature map) so any encoder/fusion
combination works: the feature map only has to be part of the graph that produced the scores.
Selvaraju et al., ICCV 2017 (Grad-CAM); Chattopadhay et al., WACV 2018 (Grad-CAM++).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ScoresAndMap = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def select_scores(scores: torch.Tensor, target: int | torch.Tensor) -> torch.Tensor:
    """Per-sample score of the target class: scores (B, C), target int or (B,) -> (B,)."""
    if isinstance(target, int):
        return scores[:, target]
    t = torch.as_tensor(target, device=scores.device).long().view(-1, 1)
    return scores.gather(1, t).squeeze(1)


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each (H, W) map of (B, H, W) to [0, 1]; a constant map becomes 0."""
    flat = maps.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return out.view_as(maps)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, h, w) maps to (B, *size)."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def grad_cam(
    forward: ScoresAndMap,
    images: torch.Tensor,
    target: int | torch.Tensor,
    plus_plus: bool = False,
    normalise: bool = True,
) -> torch.Tensor:
    """Grad-CAM (or Grad-CAM++) heatmaps (B, H, W) at the input resolution.

    forward(images) -> (scores (B, C), feature map (B, K, h, w) or transformer tokens (B, N, D)
    on a square grid); target: class index (int or one per sample). The map must lie on the
    path to the scores (ViT `maps` are reshaped copies that do not: pass `ImageFeatures.tokens`). Maps are ReLU'd, upsampled bilinearly and (by default) min-max normalised.
    """
    images = images.detach().requires_grad_(True)  # keeps the graph alive even for a frozen encoder
    with torch.enable_grad():
        scores, fmap = forward(images)
        score = select_scores(scores, target)
        (grads,) = torch.autograd.grad(score.sum(), fmap)
    fmap = fmap.detach().float()
    grads = grads.float()
    if fmap.ndim == 3:  # transformer tokens (B, N, D) on a square grid -> (B, D, g, g)
        fmap, grads = _token_grid(fmap), _token_grid(grads)
    if plus_plus:
        # Closed-form alpha of Grad-CAM++ under the exp(score) assumption (second/third powers
        # of the first derivative); positions with zero gradient get alpha 0.
        g2, g3 = grads.pow(2), grads.pow(3)
        denom = 2 * g2 + fmap.sum(dim=(2, 3), keepdim=True) * g3
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g2))
        weights = (alpha * F.relu(grads)).sum(dim=(2, 3), keepdim=True)
    else:
        weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * fmap).sum(dim=1))
    cam = upsample(cam, tuple(images.shape[-2:]))
    return normalise_maps(cam) if normalise else cam


def _token_grid(t: torch.Tensor) -> torch.Tensor:
    b, n, d = t.shape
    g = int(round(n**0.5))
    if g * g != n:
        raise ValueError(f"{n} tokens do not form a square grid")
    return t.transpose(1, 2).reshape(b, d, g, g)


def pick_map(maps: list[torch.Tensor], min_side: int = 6) -> int:
    """Index of the deepest feature map whose smaller side is >= min_side (else the deepest).

    The deepest CNN stage is the usual Grad-CAM layer, but at 48-64 px inputs it is 2-4 cells
    wide, too coarse to localise anything; one stage up keeps most of the semantics.
    """
    if not maps:
        raise ValueError("the image encoder exposes no feature maps (ImageFeatures.maps is empty)")
    for i in range(len(maps) - 1, -1, -1):
        if min(maps[i].shape[-2:]) >= min_side:
            return i
    return len(maps) - 1
