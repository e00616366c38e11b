"""Training-time image augmentation on batched tensors (torch only, runs on the batch's device).

Used when a pretrained image encoder is fine-tuned on few images (VQA-RAD has 314): small
geometric and intensity changes, the kind scanners, positioning and windowing produce. No flips:
in radiology left and right are findings ("which side is the effusion on?").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_affine_jitter(
    images: torch.Tensor,
    *,
    max_rotate: float = 0.08,
    max_scale: float = 0.05,
    max_shift: float = 0.06,
    contrast: float = 0.1,
    brightness: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Each image of a (N, C, H, W) batch rotated, scaled, shifted and intensity-jittered at random.

    Args:
        images: normalised images (any channel count).
        max_rotate: largest rotation, radians (0.08 ~ 4.6 degrees).
        max_scale: largest zoom in or out, as a fraction.
        max_shift: largest translation, as a fraction of the width / height.
        contrast, brightness: intensities become x * (1 + c) + b with |c| <= contrast and
            |b| <= brightness (in the normalised units of `images`).
        generator: random source (default: torch's global one, which the engine seeds and
            saves in checkpoints, so a resumed run draws the same values).

    Returns:
        A new tensor of the same shape and dtype; borders are filled by edge replication.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    n = images.shape[0]

    def uniform() -> torch.Tensor:  # n values in [-1, 1)
        return (torch.rand(n, generator=generator) * 2 - 1).to(images.device, images.dtype)

    angle, zoom = uniform() * max_rotate, 1 + uniform() * max_scale
    # affine_grid works in [-1, 1] coordinates, so a shift of a fraction f of the side is 2f.
    shift_x, shift_y = uniform() * 2 * max_shift, uniform() * 2 * max_shift
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], dim=1), torch.stack([sin, cos, shift_y], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain, offset = 1 + uniform() * contrast, uniform() * brightness
    return out * gain[:, None, None, None] + offset[:, None, None, None]
