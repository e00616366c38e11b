"""Faithfulness of a heatmap: deletion and insertion curves (Petsiuk et al., RISE, BMVC 2018)
compared with random maps.

Deletion: pixels are removed (set to the baseline) in order of decreasing heat; a faithful map
makes the target score fall fast (low area under the curve). Insertion: pixels are revealed on
the baseline in the same order; a faithful map makes it rise fast (high AUC). A heatmap whose
deletion AUC is not below the mean deletion AUC of random maps is flagged `unfaithful`.

Random maps are smooth noise (uniform noise on a coarse `random_grid` x `random_grid` grid,
upsampled bilinearly), so random and real maps remove similarly contiguous regions and the
comparison is not biased by salt-and-pepper deletion patterns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Scores = Callable[[torch.Tensor], torch.Tensor]


def _order(heat: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pixel indices by decreasing heat; ties broken at random (a flat map is a random order)."""
    flat = heat.flatten().double()
    jitter = torch.rand(flat.shape, generator=generator, dtype=torch.float64) * 1e-9 * (flat.abs().max() + 1e-12)
    return torch.argsort(flat + jitter, descending=True)


@torch.no_grad()
def perturbation_curves(
    score: Scores, image: torch.Tensor, heat: torch.Tensor, steps: int = 20, baseline: torch.Tensor | None = None, seed: int = 0
) -> dict[str, Any]:
    """Deletion and insertion curves of one image (C, H, W) under heatmap (H, W).

    score(images (K, C, H, W)) -> (K,) target-class score (e.g. probability). Returns
    fractions (steps + 1,), deletion and insertion score curves, and their AUCs (trapezoid
    over the fraction of pixels in [0, 1]).
    """
    if heat.shape != image.shape[-2:]:
        raise ValueError(f"heatmap {tuple(heat.shape)} does not match image {tuple(image.shape[-2:])}")
    g = torch.Generator().manual_seed(seed)
    base = torch.zeros_like(image) if baseline is None else baseline
    order = _order(heat.cpu(), g)
    n = order.numel()
    fractions = np.linspace(0.0, 1.0, steps + 1)
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    rank = rank.view(1, *heat.shape).to(image.device)
    counts = torch.tensor([int(round(f * n)) for f in fractions], device=image.device).view(-1, 1, 1, 1)
    top = rank.unsqueeze(0) < counts  # (K, 1, H, W): pixel among the first k of the order
    deleted = torch.where(top, base.unsqueeze(0), image.unsqueeze(0))
    inserted = torch.where(top, image.unsqueeze(0), base.unsqueeze(0))
    d = score(deleted).float().cpu().numpy()
    i = score(inserted).float().cpu().numpy()
    return {
        "fractions": fractions.tolist(),
        "deletion": d.tolist(),
        "insertion": i.tolist(),
        "deletion_auc": float(np.trapezoid(d, fractions)),
        "insertion_auc": float(np.trapezoid(i, fractions)),
    }


def random_map(shape: tuple[int, int], grid: int = 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """Smooth random heatmap (H, W): uniform noise on a grid x grid lattice, upsampled bilinearly."""
    coarse = torch.rand(1, 1, grid, grid, generator=generator)
    return F.interpolate(coarse, size=shape, mode="bilinear", align_corners=False)[0, 0]


def faithfulness(
    score: Scores,
    image: torch.Tensor,
    heat: torch.Tensor,
    steps: int = 20,
    n_random: int = 5,
    random_grid: int = 8,
    baseline: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Deletion/insertion AUCs of `heat` vs the mean over `n_random` random maps, and the flag.

    Returns the heatmap's curves and AUCs, `random_deletion_auc`, `random_insertion_auc`
    (means) and their per-map values, `deletion_gain` (random minus heatmap deletion AUC,
    positive = better than random), `insertion_gain`, and `unfaithful` (True when the deletion
    AUC does not beat random).
    """
    out = perturbation_curves(score, image, heat, steps, baseline, seed)
    g = torch.Generator().manual_seed(seed + 1)
    rd, ri = [], []
    for k in range(n_random):
        r = perturbation_curves(score, image, random_map(tuple(heat.shape), random_grid, g), steps, baseline, seed + 2 + k)
        rd.append(r["deletion_auc"])
        ri.append(r["insertion_auc"])
    out.update(
        random_deletion_auc=float(np.mean(rd)),
        random_insertion_auc=float(np.mean(ri)),
        random_deletion_aucs=rd,
        random_insertion_aucs=ri,
        deletion_gain=float(np.mean(rd) - out["deletion_auc"]),
        insertion_gain=float(out["insertion_auc"] - np.mean(ri)),
    )
    out["unfaithful"] = bool(out["deletion_auc"] >= out["random_deletion_auc"])
    return out


def heat_mass_inside(heat: torch.Tensor, region: torch.Tensor) -> float:
    """Fraction of a non-negative heatmap's total mass inside a boolean region (same shape)."""
    h = heat.clamp_min(0).float()
    total = float(h.sum())
    return float(h[region.bool()].sum()) / total if total > 0 else 0.0


def pointing_game(heat: torch.Tensor, region: torch.Tensor) -> bool:
    """True when the heatmap's maximum lies inside the region (Zhang et al., 2018)."""
    idx = int(torch.argmax(heat.flatten()))
    return bool(region.flatten()[idx])
