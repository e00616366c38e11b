"""Spatial fusion: text conditioning of image feature maps (B, C, H, W), as segmentation's
text-guided U-Net uses it (LViT-like text guidance).

Registered in the one fusion registry with metadata ``spatial=True`` and where the U-Net puts
them (``placement``): a spatial block is built as (image_dim=C, text_dim, dim=C) and called as
``block(x, text) -> x'`` of the same shape.

* ``spatial_film``: the pooled sentence feature predicts a per-channel scale and shift (FiLM,
  Perez et al. 2018) - cheap, global ("the nuclei are dense in the upper right" can only shift
  channel statistics); on every U-Net level.
* ``spatial_attention``: image tokens cross-attend to the text tokens (multi-head attention,
  padding masked, residual) - spatially selective, as LViT's text-image interaction at low
  resolutions; on the deepest levels.
"""

from __future__ import annotations

import torch
from torch import nn

from medmm.errors import MedmmError
from medmm.models.encoders.base import TextFeatures
from medmm.models.fusion.base import register_fusion


def _channels(image_dim: int, dim: int | None) -> int:
    if dim is not None and dim != image_dim:
        raise MedmmError(f"a spatial fusion keeps the channels of its feature map: dim {dim} != image_dim {image_dim}")
    return image_dim


@register_fusion("spatial_film", uses_image=True, uses_text=True, spatial=True, placement="every_level")
class SpatialFiLM(nn.Module):
    """x * (1 + gamma(t)) + beta(t), per channel, from the pooled text vector t."""

    def __init__(self, image_dim: int, text_dim: int, dim: int | None = None):
        super().__init__()
        channels = _channels(image_dim, dim)
        self.proj = nn.Linear(text_dim, 2 * channels)
        # Small (not zero) weights: starts close to identity, yet the text path has a
        # gradient from step one.
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, text: TextFeatures) -> torch.Tensor:
        gamma, beta = self.proj(text.pooled).chunk(2, dim=-1)
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


@register_fusion("spatial_attention", uses_image=True, uses_text=True, spatial=True, placement="deepest_levels",
                 options=("heads",))
class SpatialCrossAttention(nn.Module):
    """Image tokens (queries) attend to text tokens (keys/values); residual, pre-norm."""

    def __init__(self, image_dim: int, text_dim: int, dim: int | None = None, heads: int = 4):
        super().__init__()
        channels = _channels(image_dim, dim)
        heads = max(1, min(heads, channels))
        while channels % heads:
            heads -= 1
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, kdim=text_dim, vdim=text_dim, batch_first=True)
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, text: TextFeatures) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        out, weights = self.attn(
            self.norm(tokens), text.tokens, text.tokens, key_padding_mask=~text.mask.bool(), need_weights=True
        )
        # Kept (detached) so callers can show which words each region looked at.
        self.last_attention = weights.detach()
        return x + out.transpose(1, 2).reshape(b, c, h, w)
