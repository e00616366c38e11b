"""LViT's MoNuSeg training operations (Li et al., IEEE TMI 2023; github.com/HUANGLIZI/LViT).

Re-implemented in torch on batched tensors from the protocol of LViT's `Load_Dataset.py`
(`RandomGenerator`) and `utils.py` (`WeightedDiceBCE`), so `configs/segmentation/monuseg_*.yaml`
train as LViT's U-Net and LViT-T were trained:

- augmentation, per image: with probability 1/2 a rotation by k * 90 degrees (k uniform in
  0..3) followed by a flip along a random axis; otherwise, with probability 1/2, a rotation by an
  integer angle uniform in [-20, 19] degrees, nearest-neighbour, same size, the corners filled
  with black; otherwise unchanged (so 1/2, 1/4, 1/4);
- loss: 0.5 * soft Dice (squared denominators, per image; LViT's smoothing 1e-5 on pixels
  weighted 0.5 is 4e-5 on unweighted ones) + 0.5 *
  class-balanced BCE (half the mean BCE over foreground pixels + half over background pixels).

The random draws come from the `generator` passed in (the caller decides what seeds it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def lvit_rotate_flip(
    images: torch.Tensor,
    masks: torch.Tensor,
    generator: torch.Generator | None = None,
    fill: Sequence[float] | float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LViT's training augmentation applied to each (image, mask) pair of a batch.

    Args:
        images: (N, C, H, W) with H == W (90-degree rotations must keep the shape).
        masks: (N, 1, H, W) binary masks; they get exactly the same geometric change.
        generator: random source for every draw.
        fill: the value (per channel, or one for all) of a black pixel in `images`' units, for
            the corners a free rotation uncovers (LViT rotates raw uint8 images and fills 0);
            uncovered mask pixels are background.

    Returns:
        New tensors of the same shapes.
    """
    if images.dim() != 4 or masks.dim() != 4 or images.shape[0] != masks.shape[0]:
        raise ValueError(f"expected (N, C, H, W) images and (N, 1, H, W) masks, got {tuple(images.shape)}, {tuple(masks.shape)}")
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"LViT's rotations need square images, got {tuple(images.shape[-2:])}")
    fill_t = torch.as_tensor(fill, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)
    out_i, out_m = [], []
    for img, mask in zip(images, masks, strict=True):
        if torch.rand(1, generator=generator).item() < 0.5:
            k = int(torch.randint(0, 4, (1,), generator=generator))
            axis = int(torch.randint(0, 2, (1,), generator=generator))
            img, mask = img.rot90(k, dims=(-2, -1)), mask.rot90(k, dims=(-2, -1))
            img, mask = img.flip(-2 + axis), mask.flip(-2 + axis)
        elif torch.rand(1, generator=generator).item() < 0.5:
            angle = int(torch.randint(-20, 20, (1,), generator=generator))
            img = _rotate_nearest(img - fill_t, angle) + fill_t
            mask = _rotate_nearest(mask, angle)
        out_i.append(img)
        out_m.append(mask)
    return torch.stack(out_i), torch.stack(out_m)


def _rotate_nearest(x: torch.Tensor, degrees: int) -> torch.Tensor:
    """(C, H, W) rotated about its centre, nearest-neighbour, uncovered pixels 0."""
    rad = math.radians(degrees)
    cos, sin = math.cos(rad), math.sin(rad)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)[None]
    grid = F.affine_grid(theta, [1, *x.shape], align_corners=False)
    return F.grid_sample(x[None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]


def lvit_dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.5 * soft Dice (squared denominators, per image) + 0.5 * class-balanced BCE, from logits.

    A batch without foreground (or without background) pixels drops that half of the BCE term's
    normalisation to zero weight, as LViT's 1e-12-guarded sums do.
    """
    from monai.losses import DiceLoss

    dice = DiceLoss(sigmoid=True, squared_pred=True, smooth_nr=4e-5, smooth_dr=4e-5)(logits, target)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pos = (target > 0.5).to(bce.dtype)
    neg = 1.0 - pos
    balanced = 0.5 * (pos * bce).sum() / (pos.sum() + 1e-12) + 0.5 * (neg * bce).sum() / (neg.sum() + 1e-12)
    return 0.5 * dice + 0.5 * balanced
