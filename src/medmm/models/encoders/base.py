"""The interfaces every image and text encoder implements.

Encoders expose intermediate features, not just a pooled vector, because fusion blocks,
segmentation decoders and explanations (Grad-CAM, attention maps) all need them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

# What an image encoder expects (size, channels, mean/std, interpolation); defined in data so that
# data transforms are built from it without importing models (timm habit).
from medmm.data.transforms import ImageInputSpec


@dataclass
class ImageFeatures:
    """Output of an image encoder.

    pooled: (B, D) global feature.
    tokens: (B, N, D) spatial tokens (flattened last feature map, or ViT patch tokens).
    maps: feature maps from shallow to deep, each (B, C_i, H_i, W_i) (for U-Net style decoders
        and Grad-CAM); may be empty for encoders without a spatial grid.
    attentions: per-layer attention probabilities (B, heads, N, N) of transformer encoders, first
        layer first (for attention rollout); empty for CNNs or when not requested.
    """

    pooled: torch.Tensor
    tokens: torch.Tensor
    maps: list[torch.Tensor] = field(default_factory=list)
    attentions: list[torch.Tensor] = field(default_factory=list)


@dataclass
class TextFeatures:
    """Output of a text encoder.

    pooled: (B, D) sentence feature. tokens: (B, L, D). mask: (B, L) bool, True = real token.
    """

    pooled: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor


class ImageEncoder(nn.Module):
    """Base class: `forward(images (B, C, H, W) float) -> ImageFeatures`."""

    out_dim: int
    input_spec: ImageInputSpec  # every encoder declares it; `medmm.data.transforms.build_transform` uses it

    def forward(self, images: torch.Tensor) -> ImageFeatures:  # pragma: no cover - abstract
        raise NotImplementedError


def match_channels(images: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt (B, C, H, W) images to an encoder's channel count: grey -> RGB by repetition,
    RGB -> grey by averaging, so every encoder accepts 1- and 3-channel input."""
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    c = images.shape[1]
    if c == in_channels:
        return images
    if c == 1:
        return images.expand(-1, in_channels, -1, -1)
    if in_channels == 1 and c == 3:
        return images.mean(dim=1, keepdim=True)
    raise ValueError(f"cannot adapt {c}-channel images to an encoder expecting {in_channels} channels")


class TextEncoder(nn.Module):
    """Base class: `tokenize(texts) -> dict`, `forward(input_ids, attention_mask) -> TextFeatures`."""

    out_dim: int
    max_length: int = 128

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def fit_tokenizer(self, texts: list[str]) -> None:
        """Fit a data-dependent tokenizer on training text. Pretrained encoders: nothing to do."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:  # pragma: no cover
        raise NotImplementedError
